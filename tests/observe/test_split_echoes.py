"""Issue 25, item 9: an echoed credential reaches no client however the upstream cuts its bytes
(an SSE error frame split across two reads, on the Chat relay and the Anthropic pass-through), and
a hostile upstream's echo in a ``/v1/responses/compact`` 200 body or a ``count_tokens`` body is
masked too."""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.config.file import parse_config
from proxy.observe.redact import PartialEventTooLarge, RelayedEvents
from proxy.server.app import create_app
from proxy.upstream.client import passthrough_chunks
from tests.mock_upstream import ServerThread
from tests.mock_upstream.asgi import read_body

KEY = "sk-proj-" + "Sp1itK3y" * 6
TOKEN = "Q2xpZW50VG9rZW4" * 3
CHAT_HEAD = b'data: {"choices":[{"index":0,"delta":{"content":"Hi sk-abcdefghijklmnopq"}}]}\n\n'
CHAT_ERROR = ('data: {"error":{"message":"Incorrect API key %s (Authorization: Bearer %s)","type":"x"}}\n\n'
              % (KEY, TOKEN)).encode()
MESSAGES_HEAD = b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","role":"assistant","content":[]}}\n\n'
MESSAGES_ERROR = ('event: error\r\ndata: {"type":"error","error":{"type":"overloaded_error","message":'
                  '"bad key %s, Bearer %s"}}\r\n\r\n' % (KEY, TOKEN)).encode()


class _Reads:
    """An upstream response whose body arrives in exactly the given reads."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def aiter_bytes(self):
        for read in self.reads:
            yield read

    async def aclose(self) -> None:
        pass


def _relayed(reads: list[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [piece async for piece in passthrough_chunks(_Reads(reads))]
    return asyncio.run(run())


def _leaks(text: bytes) -> list[str]:
    """The secret parts a client could read (their last 16 characters suffice to use or find them)."""
    return [name for name, secret in (("key", KEY), ("token", TOKEN)) if secret[-16:].encode() in text]


@pytest.mark.parametrize("head, error", [(CHAT_HEAD, CHAT_ERROR), (MESSAGES_HEAD, MESSAGES_ERROR)],
                         ids=["chat", "messages"])
def test_an_error_frame_is_masked_at_every_cut(head, error):
    whole = b"".join(_relayed([head + error]))
    assert _leaks(whole) == [] and b"[REDACTED]" in whole
    assert head in whole  # the content frame is relayed as it came, credential-looking text included
    leaked = {}
    for cut in range(1, len(error)):
        relayed = _relayed([head + error[:cut], error[cut:]])
        if b"".join(relayed) != whole:
            leaked[cut] = _leaks(b"".join(relayed))
    assert leaked == {}


def test_each_complete_event_goes_out_with_the_read_that_completes_it():
    events = RelayedEvents(max_partial=1024)
    assert events.feed(CHAT_HEAD + CHAT_ERROR[:30]) == CHAT_HEAD  # not held back behind the open error frame
    assert events.feed(CHAT_ERROR[30:60]) == b""
    rest = events.feed(CHAT_ERROR[60:] + CHAT_HEAD[:10])
    assert b"[REDACTED]" in rest and _leaks(rest) == []
    assert events.flush() == CHAT_HEAD[:10]  # an unterminated last event still reaches the client


def test_a_partial_event_is_capped():
    events = RelayedEvents(max_partial=4096)
    with pytest.raises(PartialEventTooLarge):
        for _ in range(100):
            events.feed(b"data: " + b"x" * 100)
    relayed = b"".join(_relayed([b"data: {\"choices\":[]}\n\ndata: ", b"x" * (17 * 1024 * 1024)]))
    assert relayed.startswith(b'data: {"choices":[]}\n\n') and b"upstream_event_too_large" in relayed


class _SplittingUpstream:
    """Answers Chat and Messages with a content frame and an error frame echoing the caller's
    credential, the error cut at ``cut`` and sent as two writes with a pause between; compact and
    count_tokens answer 200 with the credential echoed (plainly and \\u-escaped) in the body."""

    def __init__(self) -> None:
        self.cut = 10

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        headers = dict(scope["headers"])
        secret = (headers.get(b"authorization", b"").removeprefix(b"Bearer ") or headers.get(b"x-api-key", b"")).decode()
        hidden = "".join(f"\\u{ord(c):04x}" for c in secret)
        path = scope["path"]
        if path.endswith("/responses/compact"):
            body = ('{"output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":'
                    '"echo %s"}]},{"type":"compaction","encrypted_content":"gAAAA+AIzaSyAbcdefghijklmnop"}],'
                    '"note":"%s"}' % (hidden, secret))
            return await self._send(send, "application/json", [body.encode()])
        if path.endswith("/count_tokens"):
            return await self._send(send, "application/json",
                                    [('{"input_tokens":3,"echo":"%s","also":"%s"}' % (secret, hidden)).encode()])
        if path.endswith("/messages"):
            head, error = MESSAGES_HEAD, MESSAGES_ERROR.replace(KEY.encode(), secret.encode())
        elif path.endswith("/chat/completions"):
            head, error = CHAT_HEAD, CHAT_ERROR.replace(KEY.encode(), secret.encode())
        else:
            return await self._send(send, "application/json", [b"{}"], status=404)
        await self._send(send, "text/event-stream", [head + error[:self.cut], error[self.cut:]])

    @staticmethod
    async def _send(send, media: str, pieces: list[bytes], status: int = 200) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", media.encode())]})
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(0.05)  # a separate read on the proxy's side
            await send({"type": "http.response.body", "body": piece, "more_body": index < len(pieces) - 1})


OPENAI_KEY = "sk-proj-" + "Ec4o" * 10
ANTHROPIC_KEY = "sk-ant-api03-" + "Ec4o" * 10


@pytest.fixture
def splitting(proxy_settings, tmp_path):
    upstream = _SplittingUpstream()
    with ServerThread(upstream) as echo:
        config = parse_config(tomllib.loads(f'[providers.openai]\nkind = "openai"\nbase_url = "{echo.url}/v1"\n'
                                            'models = ["gpt-4.1"]\n'))
        settings = replace(proxy_settings, codex_base_url=f"{echo.url}/backend-api/codex",
                           anthropic_base_url=echo.url, file=config,
                           env={"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
                                "CLAUDE_CONFIG_DIR": str(tmp_path)})
        with ServerThread(create_app(settings)) as proxy:
            yield proxy.url, upstream


def _decoded(text: str) -> str:
    parts = [text]
    for line in text.splitlines():
        try:
            parts.append(str(orjson.loads(line.removeprefix("data: "))))
        except orjson.JSONDecodeError:
            pass
    return "\n".join(parts)


def test_split_error_frames_and_echoing_bodies_reach_no_client(splitting, auth_path):
    url, upstream = splitting
    access = orjson.loads(open(auth_path, "rb").read())["tokens"]["access_token"]
    leaks = []
    # Cuts inside "error", inside the key (the echoed credential), and inside the bearer token.
    for door, path, body, key in (
            ("chat", "/v1/chat/completions", {"model": "gpt-4.1", "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}, OPENAI_KEY),
            ("messages", "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 20, "stream": True,
                                          "messages": [{"role": "user", "content": "hi"}]}, ANTHROPIC_KEY)):
        head, frame = (CHAT_HEAD, CHAT_ERROR) if door == "chat" else (MESSAGES_HEAD, MESSAGES_ERROR)
        frame = frame.replace(KEY.encode(), key.encode())
        for cut in (frame.index(b'"error"') + 3, frame.index(key.encode()) + len(key) // 2,
                    frame.index(TOKEN.encode()) + 5):
            upstream.cut = cut
            answer = httpx.post(f"{url}{path}", json=body)
            text = _decoded(answer.text)
            leaks += [(door, cut, name) for name, secret in (("key", key), ("token", TOKEN)) if secret[-16:] in text]
            assert head.decode() in answer.text  # the content frame as it came
    compact = httpx.post(f"{url}/v1/responses/compact", json={"model": "gpt-5.4", "input": "hi"})
    counted = httpx.post(f"{url}/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5",
                                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert compact.status_code == 200 and counted.status_code == 200
    leaks += [(path, secret[:12]) for path, answer, secret in (("compact", compact, access),
                                                              ("count_tokens", counted, ANTHROPIC_KEY))
              if secret in _decoded(answer.text)]
    assert leaks == []
    assert counted.json()["input_tokens"] == 3
    # The compaction's opaque state is handed back as it came.
    assert compact.json()["output"][1]["encrypted_content"] == "gAAAA+AIzaSyAbcdefghijklmnop"
