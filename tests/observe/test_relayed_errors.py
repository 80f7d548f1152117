"""A hostile upstream echoes the credential it was sent in its error events and bodies (issue 17,
finding 7): relayed error frames and bodies are redacted like every translated error, \\u-escaped
echoes included, while content frames pass as they came."""

from __future__ import annotations

import tomllib
from contextlib import contextmanager
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.config.file import parse_config
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.mock_upstream.asgi import read_body

OPENAI_KEY = "sk-proj-" + "Ec4o" * 10
ANTHROPIC_KEY = "sk-ant-api03-" + "Ec4o" * 10


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


class EchoingUpstream:
    """Answers every vendor path with an error that repeats the caller's credential (plainly and
    \\u-escaped), after a content frame that must reach the client unchanged."""

    def __init__(self) -> None:
        self.codex_shape = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        headers = dict(scope["headers"])
        secret = (headers.get(b"authorization", b"").removeprefix(b"Bearer ") or headers.get(b"x-api-key", b"")).decode()
        path = scope["path"]
        plain, hidden = f"invalid token {secret}", f"invalid token {escaped(secret)}"
        if path.endswith("/wham/usage"):
            body = ('{"plan_type":"pro %s","rate_limit":{"primary_window":{"used_percent":1,'
                    '"limit_window_seconds":18000,"reset_at":1}},"credits":{"has_credits":true,"balance":"%s"}}'
                    % (hidden, plain))
            return await self._send(send, "application/json", body.encode())
        if path.endswith("/responses/compact"):
            return await self._send(send, "application/json", ('{"error":{"message":"%s"}}' % hidden).encode())
        if path.endswith("/responses"):
            content = 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi sk-abcdefghijklmnopq"}\n\n'
            shapes = ['event: error\ndata: {"type":"error","code":"bad","message":"%s"}\n\n' % hidden,
                      'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_1","status":'
                      '"failed","error":{"code":"bad","message":"%s"},"output":[]}}\n\n' % hidden,
                      'data: {"type":"error","error":{"type":"bad","message":"%s"}}\n\n' % plain]
            created = 'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1"}}\n\n'
            return await self._send(send, "text/event-stream",
                                    (created + content + shapes[self.codex_shape]).encode())
        if path.endswith("/count_tokens"):
            return await self._send(send, "application/json",
                                    ('{"type":"error","error":{"type":"x","message":"%s"}}' % hidden).encode())
        if path.endswith("/messages"):
            return await self._send(send, "text/event-stream", (
                'event: message_start\ndata: {"type":"message_start","message":{"id":"m","role":"assistant","content":[]}}\n\n'
                'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"%s"}}\n\n'
                % hidden).encode())
        if path.endswith("/chat/completions"):
            return await self._send(send, "text/event-stream", (
                'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
                'data: {"error":{"message":"%s","type":"x"}}\n\n' % hidden).encode())
        await self._send(send, "application/json", b"{}", status=404)

    @staticmethod
    async def _send(send, media: str, body: bytes, status: int = 200) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", media.encode())]})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def proxy_before(upstream, proxy_settings, tmp_path):
    """A proxy whose Codex, Anthropic and OpenAI-compatible (``gpt-4.1``) upstreams are all ``upstream``."""
    with ServerThread(upstream) as echo:
        config = parse_config(tomllib.loads(f'[providers.openai]\nkind = "openai"\nbase_url = "{echo.url}/v1"\n'
                                            'models = ["gpt-4.1"]\n'))
        settings = replace(proxy_settings, codex_base_url=f"{echo.url}/backend-api/codex",
                           anthropic_base_url=echo.url, file=config,
                           env={"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
                                "CLAUDE_CONFIG_DIR": str(tmp_path)})
        with ServerThread(create_app(settings)) as proxy:
            yield proxy.url


@pytest.fixture
def hostile(proxy_settings, tmp_path):
    upstream = EchoingUpstream()
    with proxy_before(upstream, proxy_settings, tmp_path) as url:
        yield url, upstream


def _decoded(body: str) -> str:
    """Everything a client could read: the raw text and every JSON data line decoded."""
    parts = [body]
    for line in body.splitlines():
        payload = line.removeprefix("data: ")
        try:
            parts.append(orjson.dumps(orjson.loads(payload)).decode())
            parts.append(str(orjson.loads(payload)))
        except orjson.JSONDecodeError:
            pass
    return "\n".join(parts)


def test_no_relayed_error_carries_an_echoed_credential(hostile, auth_path):
    url, upstream = hostile
    access = orjson.loads(open(auth_path, "rb").read())["tokens"]["access_token"]
    secrets = (access, OPENAI_KEY, ANTHROPIC_KEY)
    answers = []
    for shape in range(3):
        upstream.codex_shape = shape
        answers.append(httpx.post(f"{url}/v1/responses", json={"model": "gpt-5.4", "input": "hi", "stream": True}))
    answers += [
        httpx.post(f"{url}/v1/responses/compact", json={"model": "gpt-5.4", "input": "hi"}),
        httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4.1", "stream": True,
                                                       "messages": [{"role": "user", "content": "hi"}]}),
        httpx.post(f"{url}/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 20, "stream": True,
                                               "messages": [{"role": "user", "content": "hi"}]}),
        httpx.post(f"{url}/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5",
                                                            "messages": [{"role": "user", "content": "hi"}]}),
        httpx.get(f"{url}/api/llm/subscription/openai/status"),
        httpx.get(f"{url}/api/llm/subscription/openai/usage"),
        httpx.get(f"{url}/backend-api/wham/usage"),
    ]
    leaks = [(answer.request.url.path, secret[:12]) for answer in answers for secret in secrets
             if secret in _decoded(answer.text)]
    assert leaks == []
    assert all("[REDACTED]" in answer.text for answer in answers), [a.text[:200] for a in answers if "[REDACTED]" not in a.text]
    # Content frames are relayed as they came, credential-looking text included.
    assert '"delta":"Hi sk-abcdefghijklmnopq"' in answers[0].text
