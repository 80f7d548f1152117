"""Model calls on the default transport go straight through aiohttp (proxy.upstream.direct): what a client
sees must be what it saw through httpx — decoded bodies, the adapter's headers upstream, 502/504 and a
stream's error frame when the upstream breaks."""

from __future__ import annotations

import asyncio
import gzip
import tomllib

import httpx
import orjson

from proxy.config.file import parse_config
from proxy.config.settings import Settings, Timeouts
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

USER = [{"role": "user", "content": "hi"}]
COMPLETION = orjson.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hello there"}}]})

# 3,000 deltas of 100 characters: about 0.5 MB, past aiohttp's read buffer limit, so the proxy's reading of
# the upstream pauses and resumes while the client reads.
FRAMES = [b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"'
          + (b"%04d" % n) * 25 + b'"}}]}\n\n' for n in range(3000)] + [b"data: [DONE]\n\n"]


class Upstream:
    """A bare ASGI upstream whose answer each test picks; it keeps the last request's headers."""

    def __init__(self) -> None:
        self.mode = "gzip"
        self.headers: dict[str, str] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        while (await receive()).get("more_body"):
            pass
        if self.mode == "gzip":
            body = gzip.compress(COMPLETION)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                (b"x-ratelimit-remaining-requests", b"41")]})
            await send({"type": "http.response.body", "body": body})
        elif self.mode == "break":  # one frame, then the connection drops
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "more_body": True,
                        "body": b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
                                b'"delta":{"content":"hel"}}]}\n\n'})
            raise RuntimeError("upstream crashed mid-stream")
        elif self.mode == "burst":  # many small frames written back to back, so several arrive in one read
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for frame in FRAMES:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif self.mode == "silent":  # headers, then nothing for longer than the read timeout
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await asyncio.sleep(3)
            await send({"type": "http.response.body", "body": COMPLETION})


def _proxy(upstream_url: str, **settings) -> ServerThread:
    config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{upstream_url}/v1"\n'
                                        'api_key = "sk-local-test-key"\nmodels = ["m"]\n'))
    return ServerThread(create_app(Settings(codex_auth_path="/nonexistent/auth.json", file=config, **settings)))


def test_a_gzipped_answer_arrives_decoded_with_the_adapters_headers_upstream():
    upstream = Upstream()
    with ServerThread(upstream) as mock, _proxy(mock.url) as proxy:
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "local/m", "messages": USER})
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "hello there"
    assert answer.headers["x-ratelimit-remaining-requests"] == "41"  # quota headers still reach the client
    assert upstream.headers["authorization"] == "Bearer sk-local-test-key"
    assert upstream.headers["content-type"] == "application/json"
    assert "gzip" in upstream.headers["accept-encoding"]


def test_an_upstream_that_drops_mid_stream_ends_the_stream_with_an_error_frame():
    upstream = Upstream()
    upstream.mode = "break"
    with ServerThread(upstream) as mock, _proxy(mock.url) as proxy:
        answer = httpx.post(f"{proxy.url}/v1/chat/completions",
                            json={"model": "local/m", "messages": USER, "stream": True})
    assert answer.status_code == 200  # the upstream had answered 200 before it broke
    last = answer.text.strip().split("\n\n")[-1]
    assert last.startswith("data: ") and "The upstream connection broke mid-response" in last


def test_an_upstream_silent_past_the_read_timeout_is_a_504():
    upstream = Upstream()
    upstream.mode = "silent"
    with ServerThread(upstream) as mock, _proxy(mock.url, timeouts=Timeouts(read=0.5)) as proxy:
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "local/m", "messages": USER},
                            timeout=10)
    assert answer.status_code == 504
    assert "stopped sending" in answer.json()["error"]["message"]


def test_a_burst_of_stream_frames_reaches_the_client_byte_for_byte_in_order():
    upstream = Upstream()
    upstream.mode = "burst"
    with ServerThread(upstream) as mock, _proxy(mock.url) as proxy:
        for _ in range(2):  # the second on the kept-alive upstream connection
            with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=30,
                              json={"model": "local/m", "messages": USER, "stream": True}) as answer:
                assert answer.status_code == 200
                body = b"".join(answer.iter_bytes())
            assert body == b"".join(FRAMES)
