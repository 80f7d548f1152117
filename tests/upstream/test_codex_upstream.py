"""The Codex adapter's HTTP, seen from the wire (respx): headers, body, refresh/replay, errors."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest
import respx

from proxy import __version__
from proxy.server.app import create_app
from proxy.config.settings import Settings
from tests.conftest import write_auth_file
from tests.helpers import fixture_bytes
from tests.mock_upstream.server import ACCOUNT_ID, MockState

BASE = "https://chatgpt.test/backend-api/codex"
TOKEN_URL = "https://auth.test/oauth/token"
TEXT_SSE = fixture_bytes("codex/text.sse")
HELLO = {"model": "gpt-5.1-codex", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def auth(tmp_path):
    state = MockState()
    data = state.auth_file()
    path = str(tmp_path / "auth.json")
    write_auth_file(path, data)
    return path, data, state


@asynccontextmanager
async def proxy(auth_path: str):
    # respx patches httpx's own transport, so these tests run the proxy on it
    app = create_app(Settings(codex_base_url=BASE, codex_token_url=TOKEN_URL, codex_auth_path=auth_path,
                              upstream_transport="httpx"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            yield client


def sse(body: bytes = TEXT_SSE) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


@respx.mock
async def test_request_carries_honest_identity_account_and_session_headers(auth):
    path, data, _ = auth
    route = respx.post(f"{BASE}/responses").mock(return_value=sse())
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200
    sent = route.calls[0].request
    assert sent.headers["authorization"] == f"Bearer {data['tokens']['access_token']}"
    assert sent.headers["chatgpt-account-id"] == ACCOUNT_ID
    assert sent.headers["openai-beta"] == "responses=experimental"
    assert sent.headers["originator"] == "subrelay"
    assert sent.headers["user-agent"].startswith(f"subrelay/{__version__}")
    assert "codex" not in sent.headers["user-agent"].lower()
    assert sent.headers["accept"] == "text/event-stream"
    body = json.loads(sent.content)
    assert sent.headers["session_id"] == body["prompt_cache_key"]
    assert body["stream"] is True and body["store"] is False and body["instructions"]


@respx.mock
async def test_401_refreshes_once_and_replays_with_the_new_token(auth):
    path, data, _ = auth
    new_access = "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.bmV3"
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": new_access, "refresh_token": "rt_next_1234567"}))
    route = respx.post(f"{BASE}/responses").mock(side_effect=[httpx.Response(401, json={"detail": "expired"}), sse()])
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello, wörld! 👋"
    assert [c.request.headers["authorization"] for c in route.calls] == [
        f"Bearer {data['tokens']['access_token']}", f"Bearer {new_access}"]
    assert json.loads(open(path).read())["tokens"]["refresh_token"] == "rt_next_1234567"


@respx.mock
async def test_second_401_is_our_401_with_an_actionable_message_and_no_loop(auth):
    path, data, _ = auth
    token_route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.c2ln"}))
    route = respx.post(f"{BASE}/responses").mock(return_value=httpx.Response(401, json={"detail": "revoked"}))
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 401
    error = response.json()["error"]
    assert "codex login" in error["message"] and error["type"] == "authentication_error"
    assert route.call_count == 2 and token_route.call_count == 1
    assert data["tokens"]["access_token"] not in response.text


@respx.mock
async def test_usage_limit_becomes_429_with_retry_after_and_the_plan(auth):
    path, _, _ = auth
    resets = int(time.time()) + 3600
    respx.post(f"{BASE}/responses").mock(return_value=httpx.Response(429, headers={
        "x-codex-primary-used-percent": "100.0", "x-codex-primary-window-minutes": "300", "x-other": "dropped"},
        json={"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached "
                        "(sk-proj-abcdefghijklmnopqrstuvwxyz0123456789)", "plan_type": "plus",
                        "resets_at": resets, "resets_in_seconds": 3600}}))
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600" and response.headers["x-should-retry"] == "false"
    assert response.headers["x-codex-primary-used-percent"] == "100.0" and "x-other" not in response.headers
    error = response.json()["error"]
    # What the Codex CLI reads to end the turn with the plan's message instead of retrying.
    assert error["type"] == "usage_limit_reached" and error["code"] == "usage_limit_reached"
    assert error["plan_type"] == "plus" and error["resets_at"] == resets
    assert "ChatGPT Plus plan" in error["message"] and "resets at" in error["message"]
    assert "abcdefghijklmnop" not in response.text


@respx.mock
async def test_usage_not_included_and_overload_keep_the_codes_codex_reads(auth):
    path, _, _ = auth
    respx.post(f"{BASE}/responses").mock(side_effect=[
        httpx.Response(429, json={"error": {"type": "usage_not_included", "message": "upgrade", "plan_type": "free"}}),
        httpx.Response(503, json={"error": {"code": "server_is_overloaded", "message": "busy"}}),
        httpx.Response(429, json={"error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "slow"}},
                       headers={"retry-after": "2"}),
    ])
    async with proxy(path) as client:
        not_included = await client.post("/v1/chat/completions", json=HELLO)
        overloaded = await client.post("/v1/chat/completions", json=HELLO)
        limited = await client.post("/v1/chat/completions", json=HELLO)
    assert not_included.status_code == 429 and not_included.json()["error"]["type"] == "usage_not_included"
    assert not_included.json()["error"]["plan_type"] == "free"
    assert overloaded.status_code == 503 and overloaded.json()["error"]["code"] == "server_is_overloaded"
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["retry-after"] == "2" and "x-should-retry" not in limited.headers


@pytest.mark.parametrize("upstream,status,text", [
    (httpx.Response(400, json={"detail": "The 'gpt-9' model is not supported."}), 400, "gpt-9"),
    (httpx.Response(403, json={"detail": "Your plan does not include Codex."}), 403, "plan does not include"),
    (httpx.Response(500, text="internal"), 502, "HTTP 500"),
    (httpx.Response(503, json={"detail": "overloaded"}), 503, "overloaded"),
    (httpx.ConnectError("refused"), 502, "Could not connect"),
    (httpx.ReadTimeout("slow"), 504, "did not answer in time"),
])
@respx.mock
async def test_upstream_failures_map_to_openai_errors(auth, upstream, status, text):
    path, _, _ = auth
    route = respx.post(f"{BASE}/responses")
    if isinstance(upstream, Exception):
        route.mock(side_effect=upstream)
    else:
        route.mock(return_value=upstream)
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert text in error["message"]


@respx.mock
async def test_instructions_rejection_retries_once_with_defaults_and_remembers_the_model(auth):
    path, _, _ = auth
    route = respx.post(f"{BASE}/responses").mock(side_effect=[
        httpx.Response(400, json={"detail": "Instructions are not valid"}), sse(), sse()])
    request = {"model": "gpt-5.1-codex", "messages": [{"role": "system", "content": "Talk like a pirate."},
                                                      {"role": "user", "content": "hi"}]}
    async with proxy(path) as client:
        first = await client.post("/v1/chat/completions", json=request)
        second = await client.post("/v1/chat/completions", json=request)
    assert first.status_code == second.status_code == 200
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert bodies[0]["instructions"] == "Talk like a pirate."
    for retried in bodies[1:]:
        assert retried["instructions"] != "Talk like a pirate."
        assert retried["input"][0] == {"type": "message", "role": "developer",
                                       "content": [{"type": "input_text", "text": "Talk like a pirate."}]}
    assert route.call_count == 3  # the second request went the accepted way first


@respx.mock
async def test_stream_failure_before_any_text_gets_a_real_status(auth):
    path, _, _ = auth
    respx.post(f"{BASE}/responses").mock(return_value=sse(fixture_bytes("codex/failed.sse")))
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json={**HELLO, "stream": True})
    assert response.status_code == 400
    assert "context window" in response.json()["error"]["message"]


@respx.mock
async def test_stream_failure_after_text_arrives_as_an_error_chunk(auth):
    path, _, _ = auth
    respx.post(f"{BASE}/responses").mock(return_value=sse(fixture_bytes("codex/error_event.sse")))
    async with proxy(path) as client:
        response = await client.post("/v1/chat/completions", json={**HELLO, "stream": True})
    assert response.status_code == 200
    frames = [f for f in response.text.split("\n\n") if f]
    assert '"content":"Partial"' in frames[1]
    assert json.loads(frames[-1][6:])["error"]["type"] == "upstream_error"
    assert "[DONE]" not in response.text
