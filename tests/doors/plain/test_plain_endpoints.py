"""The plain OpenAI endpoints (``/v1/embeddings``, ``/v1/moderations``, ``/v1/audio/transcriptions``,
``/v1/images/generations``) relayed to each API-key provider that has them (respx): the provider's URL,
its key, the model renamed, the answer as it came; a ChatGPT-plan model and a vendor without the endpoint
answer a 400 that says so; every bad client value a 400 naming it, never a 500."""

from __future__ import annotations

import base64
import struct
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import orjson
import pytest
import respx

from proxy.config.settings import Settings
from proxy.server.app import create_app
from tests.mock_upstream.plain_answers import read_form

OPENAI_KEY = "sk-proj-" + "Ab1Cd2Ef3" * 6
OPENROUTER_KEY = "sk-or-v1-" + "a1b2c3d4" * 8
GEMINI_KEY = "AIza" + "Sy1Ab2Cd3Ef4Gh5Ij6Kl7Mn8Op9Qr0S"[:35]
GROQ_KEY = "gsk_" + "Ab1Cd2Ef3Gh4" * 4
ENV = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY, "GEMINI_API_KEY": GEMINI_KEY,
       "GROQ_API_KEY": GROQ_KEY, "PERPLEXITY_API_KEY": "pplx-" + "Ab1Cd2" * 8,
       "ANTHROPIC_API_KEY": "sk-ant-api03-" + "Ab1Cd2Ef3" * 10}
EMBEDDING = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.75]}],
             "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}


@asynccontextmanager
async def proxy(tmp_path, env: dict | None = None, settings: Settings | None = None):
    base = settings or Settings(codex_auth_path=str(tmp_path / "none.json"))
    app = create_app(replace(base, upstream_transport="httpx", env=ENV if env is None else env))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            yield client


def sent_json(route) -> dict:
    return orjson.loads(route.calls[0].request.content)


@respx.mock
async def test_embeddings_reach_openai_with_its_key_and_the_answer_comes_back_unchanged(tmp_path):
    packed = base64.b64encode(struct.pack("<2f", 0.25, 0.75)).decode()
    answer = {**EMBEDDING, "data": [{"object": "embedding", "index": 0, "embedding": packed}]}
    route = respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(200, json=answer))
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={
            "model": "openai/text-embedding-3-small", "input": ["a", "b"], "encoding_format": "base64",
            "dimensions": 2})
    assert response.status_code == 200, response.text
    assert response.json() == answer and response.headers["x-subrelay-route"] == "openai/text-embedding-3-small"
    sent = route.calls[0].request
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent_json(route) == {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "base64",
                                "dimensions": 2}


@respx.mock
async def test_a_bare_embedding_model_routes_to_openai_and_its_bytes_go_unchanged(tmp_path):
    route = respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(200, json=EMBEDDING))
    raw = b'{"input": [[1, 2, 3], [4]],  "model": "text-embedding-3-small"}'
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert route.calls[0].request.content == raw  # token arrays, spacing and key order as the client sent them


@respx.mock
async def test_openrouter_embeddings_go_to_its_api_with_its_key(tmp_path):
    route = respx.post("https://openrouter.ai/api/v1/embeddings").mock(return_value=httpx.Response(200, json=EMBEDDING))
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={"model": "openrouter/openai/text-embedding-3-small",
                                                             "input": "hello"})
    assert response.status_code == 200, response.text
    assert route.calls[0].request.headers["authorization"] == f"Bearer {OPENROUTER_KEY}"
    assert sent_json(route)["model"] == "openai/text-embedding-3-small"


@respx.mock
async def test_gemini_embeddings_use_its_openai_compatible_endpoint(tmp_path):
    route = respx.post("https://generativelanguage.googleapis.com/v1beta/openai/embeddings").mock(
        return_value=httpx.Response(200, json={**EMBEDDING, "model": "gemini-embedding-001"}))
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={"model": "gemini-embedding-001", "input": "hello"})
    assert response.status_code == 200, response.text
    assert response.headers["x-subrelay-route"] == "gemini/gemini-embedding-001"
    assert route.calls[0].request.headers["authorization"] == f"Bearer {GEMINI_KEY}"


@respx.mock
async def test_moderations_default_to_openais_model_and_images_are_relayed(tmp_path):
    moderation = {"id": "modr-1", "model": "omni-moderation-latest",
                  "results": [{"flagged": False, "categories": {"violence": False},
                               "category_scores": {"violence": 0.001}}]}
    moderated = respx.post("https://api.openai.com/v1/moderations").mock(return_value=httpx.Response(200, json=moderation))
    image = {"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}],
             "usage": {"total_tokens": 4170, "input_tokens": 10, "output_tokens": 4160}}
    drawn = respx.post("https://api.openai.com/v1/images/generations").mock(return_value=httpx.Response(200, json=image))
    async with proxy(tmp_path) as client:
        checked = await client.post("/v1/moderations", json={"input": [
            "some text", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]})
        made = await client.post("/v1/images/generations", json={"model": "gpt-image-1", "prompt": "a red fox",
                                                                 "n": 1, "size": "1024x1024"})
    assert checked.status_code == 200 and checked.json() == moderation
    assert sent_json(moderated)["model"] == "omni-moderation-latest"  # OpenAI's default, said explicitly
    assert made.status_code == 200 and made.json() == image
    assert sent_json(drawn) == {"model": "gpt-image-1", "prompt": "a red fox", "n": 1, "size": "1024x1024"}


def form(fields: dict[str, str], audio: bytes = b"RIFF....WAVEfmt mock audio", filename: str = "talk.wav",
         boundary: str = "b0undary42") -> tuple[bytes, str]:
    out = b""
    for name, value in fields.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


@respx.mock
async def test_a_transcription_form_is_relayed_with_the_model_renamed_and_the_audio_intact(tmp_path):
    route = respx.post("https://api.openai.com/v1/audio/transcriptions").mock(
        return_value=httpx.Response(200, text="hello there\n", headers={"content-type": "text/plain; charset=utf-8"}))
    audio = bytes(range(256)) * 40  # every byte value, CR and LF included
    body, content_type = form({"model": "openai/whisper-1", "response_format": "text", "language": "en"}, audio)
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.text == "hello there\n" and response.headers["content-type"].startswith("text/plain")
    sent = route.calls[0].request
    received = read_form(sent.headers["content-type"], sent.content)  # the standard library's MIME parser
    assert received["model"] == "whisper-1" and received["response_format"] == "text" and received["language"] == "en"
    assert received["file"] == {"filename": "talk.wav", "bytes": audio, "type": "audio/wav"}


@respx.mock
async def test_groq_transcribes_with_whisper_large(tmp_path):
    route = respx.post("https://api.groq.com/openai/v1/audio/transcriptions").mock(
        return_value=httpx.Response(200, json={"text": "hi"}))
    body, content_type = form({"model": "whisper-large-v3"})
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type})
    assert response.status_code == 200 and response.json() == {"text": "hi"}
    assert route.calls[0].request.content == body  # the model kept its name: the client's bytes as they came


async def test_a_chatgpt_plan_model_has_no_embeddings_and_says_so(proxy_settings, tmp_path):
    async with proxy(tmp_path, env={"OPENAI_API_KEY": OPENAI_KEY}, settings=proxy_settings) as client:
        response = await client.post("/v1/embeddings", json={"model": "gpt-5.4", "input": "hi"})
        image = await client.post("/v1/images/generations", json={"model": "codex/gpt-5.4", "prompt": "a fox"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_endpoint"
    assert error["param"] == "model"
    assert "ChatGPT plan" in error["message"] and "/v1/embeddings" in error["message"]
    assert "openai/text-embedding-3-small" in error["message"]  # and where to go instead
    assert image.status_code == 400 and "/v1/images/generations" in image.json()["error"]["message"]


@pytest.mark.parametrize("path,body", [
    ("/v1/embeddings", {"model": "sonar", "input": "hi"}),  # Perplexity has no embeddings
    ("/v1/embeddings", {"model": "claude-sonnet-4-5", "input": "hi"}),  # nor Anthropic
    ("/v1/moderations", {"model": "openrouter/openai/omni-moderation-latest", "input": "hi"}),
])
async def test_a_provider_without_the_endpoint_answers_400_naming_who_has_it(tmp_path, path, body):
    async with proxy(tmp_path) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "which has no /v1/" in message and "Providers here that have it: openai" in message


async def test_an_unknown_model_is_the_usual_model_not_found(tmp_path):
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={"model": "no-such-embedder", "input": "hi"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("path,body,param", [
    ("/v1/embeddings", {"input": "hi"}, "model"),
    ("/v1/embeddings", {"model": "text-embedding-3-small"}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ""}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": []}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", 3]}, "input[1]"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [1, "a"]}, "input[1]"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [[1, -2]]}, "input[0][1]"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [[1], []]}, "input[1]"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [True]}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [{"text": "a"}]}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a"] * 2049}, "input"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "dimensions": 0}, "dimensions"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "dimensions": "256"}, "dimensions"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "dimensions": 1.5}, "dimensions"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "user": 7}, "user"),
    ("/v1/embeddings", {"model": ["x"], "input": "a"}, "model"),
    ("/v1/moderations", {"input": [{"type": "audio"}]}, "input[0].type"),
    ("/v1/moderations", {"input": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]},
     "input[0].image_url.url"),
    ("/v1/moderations", {"input": 5}, "input"),
    ("/v1/images/generations", {"model": "gpt-image-1"}, "prompt"),
    ("/v1/images/generations", {"model": "gpt-image-1", "prompt": ""}, "prompt"),
    ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "a", "n": 11}, "n"),
    ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "a", "response_format": "jpeg"}, "response_format"),
    ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "a", "stream": True}, "stream"),
    ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "a", "output_compression": 101},
     "output_compression"),
])
async def test_every_bad_client_value_is_a_400_naming_it(tmp_path, path, body, param):
    with respx.mock(assert_all_called=False) as mock:  # nothing may reach an upstream
        async with proxy(tmp_path) as client:
            response = await client.post(path, json=body)
        assert not mock.calls
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


@pytest.mark.parametrize("body,content_type,status,code", [
    (b'{"model": "whisper-1"}', "application/json", 415, "unsupported_media_type"),
    (b"--x\r\nno headers here", "multipart/form-data; boundary=x", 400, "invalid_multipart"),
    (b"--x\r\n\r\nvalue\r\n--x--", "multipart/form-data; boundary=x", 400, "invalid_multipart"),
    (b"anything", "multipart/form-data", 400, "invalid_multipart"),
    (form({"model": "whisper-1"}, audio=b"")[0], form({})[1], 400, "invalid_value"),
    (form({"model": "whisper-1", "temperature": "hot"})[0], form({})[1], 400, "invalid_type"),
    (form({"model": "whisper-1", "response_format": "mp3"})[0], form({})[1], 400, "invalid_value"),
    (form({"model": "whisper-1", "timestamp_granularities[]": "letter"})[0], form({})[1], 400, "invalid_value"),
    (form({"model": "whisper-1", "stream": "true"})[0], form({})[1], 400, "unsupported_value"),
    (form({"response_format": "json"})[0], form({})[1], 400, "missing_required_parameter"),
    (b"--b0undary42\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b0undary42--\r\n",
     form({})[1], 400, "missing_required_parameter"),
])
async def test_a_bad_transcription_form_is_refused_clearly(tmp_path, body, content_type, status, code):
    with respx.mock(assert_all_called=False) as mock:
        async with proxy(tmp_path) as client:
            response = await client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type})
        assert not mock.calls
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_an_audio_file_over_25_mib_is_refused_before_any_upstream(tmp_path, monkeypatch):
    from proxy.doors.plain import request as plain_request

    monkeypatch.setattr(plain_request, "MAX_AUDIO_BYTES", 1024)  # the same check, without a 25 MiB body
    body, content_type = form({"model": "whisper-1"}, audio=b"\0" * 1025)
    with respx.mock(assert_all_called=False) as mock:
        async with proxy(tmp_path) as client:
            response = await client.post("/v1/audio/transcriptions", content=body, headers={"content-type": content_type})
        assert not mock.calls
    assert response.status_code == 413 and response.json()["error"]["param"] == "file"


@respx.mock
async def test_an_upstream_answer_beyond_the_size_bound_is_a_502_not_a_memory_spike(tmp_path, monkeypatch):
    from proxy.doors.plain import endpoint

    monkeypatch.setattr(endpoint, "MAX_UPSTREAM_BODY", 1000)
    respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(
        200, json={**EMBEDDING, "data": [{"object": "embedding", "index": 0, "embedding": [0.5] * 400}]}))
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_body_too_large"


@respx.mock
async def test_an_upstream_error_is_mapped_and_never_echoes_the_key(tmp_path):
    respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(
        401, json={"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}.", "code": "invalid_api_key"}}))
    async with proxy(tmp_path) as client:
        response = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert response.status_code == 401 and OPENAI_KEY not in response.text
    assert response.json()["error"]["code"] == "invalid_api_key"


@respx.mock
async def test_a_rate_limited_provider_falls_back_before_answering(tmp_path):
    from proxy.config.file import parse_config
    import tomllib

    respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(
        429, json={"error": {"message": "slow down"}}, headers={"retry-after": "5"}))
    backup = respx.post("https://openrouter.ai/api/v1/embeddings").mock(return_value=httpx.Response(200, json=EMBEDDING))
    config = parse_config(tomllib.loads('[fallbacks]\n"text-embedding-3-small" = ["openrouter/openai/text-embedding-3-small"]\n'))
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), file=config)
    async with proxy(tmp_path, settings=settings) as client:
        response = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert response.status_code == 200 and response.headers["x-subrelay-route"] == "openrouter/openai/text-embedding-3-small"
    assert sent_json(backup)["model"] == "openai/text-embedding-3-small"


async def test_the_edge_guards_these_paths_like_the_model_doors(tmp_path):
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), api_keys=("sk-subrelay-" + "k" * 24,))
    with respx.mock(assert_all_called=False) as mock:
        async with proxy(tmp_path, settings=settings) as client:
            body = {"model": "text-embedding-3-small", "input": "hi"}
            keyless = await client.post("/v1/embeddings", json=body)
            keyed = {"authorization": "Bearer sk-subrelay-" + "k" * 24}
            foreign = await client.post("/v1/embeddings", json=body, headers={**keyed, "origin": "https://evil.example"})
            rebound = await client.post("/v1/embeddings", json=body, headers={**keyed, "host": "evil.example"})
            form_post = await client.post("/v1/moderations", content=b"input=hi", headers={
                **keyed, "content-type": "application/x-www-form-urlencoded"})
        assert not mock.calls
    assert keyless.status_code == 401
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "origin_not_allowed"
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
    assert form_post.status_code == 415
