"""Real clients on the plain endpoints against a live subrelay on loopback, whose OpenAI provider is a
loopback mock answering in the real API's shapes: LangChain's ``OpenAIEmbeddings`` (openai-python asks
for base64 vectors by default, ``openai/lib/_parsing/_embeddings.py``; and for floats when told), the
OpenAI SDK's token arrays, transcription upload, moderation and image calls, and every Python example in
docs/endpoints.md."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from langchain_openai import OpenAIEmbeddings
from openai import OpenAI

from proxy.config.file import parse_config
from proxy.config.settings import Settings
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.mock_upstream.plain_answers import vector

DOC = Path(__file__).resolve().parents[2] / "docs" / "endpoints.md"
OPENAI_KEY = "sk-proj-" + "Mock0Key1" * 6


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(subrelay's /v1 URL, the mock upstream's state): one pair for the module's tests."""
    home = tmp_path_factory.mktemp("home")
    upstream = MockOpenAIServer()
    upstream.state = OpenAIMockState(api_key=OPENAI_KEY)
    with ServerThread(upstream) as mock:
        config = parse_config(tomllib.loads(f'[providers.openai]\nkind = "openai"\nbase_url = "{mock.url}/v1"\n'
                                            f'[providers.perplexity]\nkind = "perplexity"\nbase_url = "{mock.url}/v1"\n'))
        settings = Settings(codex_auth_path=str(home / "none.json"), file=config,
                            env={"OPENAI_API_KEY": OPENAI_KEY, "PERPLEXITY_API_KEY": "pplx-" + "Ab1Cd2" * 8,
                                 "CLAUDE_CONFIG_DIR": str(home)})
        with ServerThread(create_app(settings)) as proxy:
            yield f"{proxy.url}/v1", upstream.state


@pytest.fixture
def upstream(live):
    live[1].requests.clear()
    return live[1]


def test_langchain_embeddings_arrive_decoded_from_the_sdks_default_base64(live, upstream):
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=live[0], api_key="unused",
                                  check_embedding_ctx_length=False, max_retries=0)
    vectors = embeddings.embed_documents(["alpha", "beta gamma"])
    assert vectors == [vector(0, 4), vector(1, 4)]  # exact: the mock's values are exact in float32
    assert embeddings.embed_query("delta") == vector(0, 4)
    sent = upstream.requests[0]
    assert sent["path"] == "/v1/embeddings" and sent["body"]["encoding_format"] == "base64"
    assert sent["body"]["input"] == ["alpha", "beta gamma"]
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"  # the provider's key, not the client's


def test_langchain_asking_for_floats_gets_floats(live, upstream):
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=live[0], api_key="unused", dimensions=3,
                                  check_embedding_ctx_length=False, model_kwargs={"encoding_format": "float"})
    assert embeddings.embed_documents(["one"]) == [vector(0, 3)]
    assert upstream.requests[0]["body"]["encoding_format"] == "float" and upstream.requests[0]["body"]["dimensions"] == 3


def test_the_sdk_sends_token_arrays_and_reads_the_usage(live, upstream):
    client = OpenAI(base_url=live[0], api_key="unused", max_retries=0)
    answer = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert [item.embedding for item in answer.data] == [vector(0, 4), vector(1, 4)]
    assert answer.usage.prompt_tokens == 5 and upstream.requests[0]["body"]["input"] == [[1, 2, 3], [4, 5]]


def test_the_sdk_uploads_audio_and_calls_moderation_and_images(live, upstream):
    client = OpenAI(base_url=live[0], api_key="unused", max_retries=0)
    audio = b"RIFF" + bytes(range(256)) * 64
    text = client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", audio), response_format="text")
    assert text.strip() == f"heard {len(audio)} bytes of talk.wav"
    heard = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("talk.wav", audio))
    assert heard.text == f"heard {len(audio)} bytes of talk.wav"
    assert upstream.requests[0]["body"]["file"]["bytes"] == audio
    moderated = client.moderations.create(input="a kind word")
    assert moderated.results[0].flagged is False and upstream.requests[2]["body"]["model"] == "omni-moderation-latest"
    image = client.images.generate(model="gpt-image-1", prompt="a red fox")
    assert image.data[0].b64_json and image.usage.output_tokens == 4160


def test_a_provider_without_embeddings_is_a_clear_400_for_the_sdk_and_an_unknown_model_a_404(live, upstream):
    import openai

    client = OpenAI(base_url=live[0], api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="sonar", input="hi")  # Perplexity has no /v1/embeddings
    assert caught.value.code == "unsupported_endpoint" and "Providers here that have it: openai" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="hi")
    assert not upstream.requests


def test_every_python_example_in_docs_endpoints_runs(live):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 2
    for body in blocks:
        code = body.replace("http://127.0.0.1:8787/v1", live[0])
        exec(compile(code, str(DOC), "exec"), {})
