"""One connection to the Codex backend's Responses WebSocket, as the Codex CLI opens it.

Protocol facts (openai/codex ``codex-rs/codex-api/src/endpoint/responses_websocket.rs`` @ 00033d92 and
``codex-rs/core/src/client.rs``; ../shared/research/codex-websocket.md): the URL is the HTTP one,
``{base}/responses``, with http→ws and https→wss; the upgrade carries the same auth headers as HTTP plus
``OpenAI-Beta: responses_websockets=2026-02-06`` (v2: continue with ``previous_response_id``; codex-rs also
offers permessage-deflate); each request is one text frame ``{"type": "response.create", …body}``; each event
comes back as one text frame holding what an SSE ``data:`` line would; a binary frame or a close before
``response.completed`` is an error; an error arrives as ``{"type": "error", "status": N, "error": {…},
"headers": {…}}``.

The client is aiohttp's (already the HTTP engine's library): its frame reader is compiled, which matters
because the backend sends one frame per delta; ``websockets`` (installed with ``uvicorn[standard]``) costs
about three times the CPU per frame here (measured: benchmarks/README.md). permessage-deflate, which
codex-rs offers, is not offered: the frames are mostly deltas of a few bytes, where inflating each one costs
more CPU than it saves bytes, and an incremental turn's upload is already small.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

BETA_HEADER = "responses_websockets=2026-02-06"  # codex-rs RESPONSES_WEBSOCKETS_V2_BETA_HEADER_VALUE
MAX_FRAME = 64 * 1024 * 1024  # one event (a completed response with its output can be large)
# HTTP-only request headers (the socket's frames are JSON text; the beta header gets the socket's value).
_HTTP_ONLY = frozenset({"content-type", "accept", "openai-beta", "content-length", "accept-encoding"})
# Upgrade statuses that are an answer about the *login* (signing again may help), not about the transport.
ANSWERED = frozenset({401, 403, 429})


class SocketClosed(Exception):
    """The socket closed (or broke, or sent a binary frame) while a response was expected."""


class UpgradeRefused(Exception):
    """The backend will not speak WebSocket here (426, 404, a dropped connection…): use HTTP."""


class UpgradeAnswered(Exception):
    """The upgrade got an HTTP error about the request itself (401, 403, 429): relayed like an HTTP answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(status)
        self.status, self.headers, self.body = status, headers, body


def websocket_url(http_url: str) -> str:
    """``http(s)://…/backend-api/codex/responses`` → ``ws(s)://…/backend-api/codex/responses``."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://"):]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://"):]
    return http_url


def upgrade_headers(http_headers: Mapping[str, str]) -> dict[str, str]:
    """The HTTP request's headers for the upgrade: auth, ``chatgpt-account-id``, ``originator`` and the
    ``User-Agent`` (subrelay's own), the session id; the socket's beta header instead of the HTTP one."""
    headers = {name: value for name, value in http_headers.items() if name.lower() not in _HTTP_ONLY}
    headers["OpenAI-Beta"] = BETA_HEADER
    return headers


class CodexSocket:
    """An open socket, used by one response at a time, with the record of its last turn."""

    __slots__ = ("connection", "key", "owner", "opened_at", "used_at", "turn", "headers", "upgrade", "gone")

    def __init__(self, connection: aiohttp.ClientWebSocketResponse, key: tuple, owner: tuple,
                 upgrade: Mapping[str, str] | None = None) -> None:
        self.connection = connection
        self.upgrade = dict(upgrade or {})  # the headers it was opened with (a reconnect sends the same)
        self.gone = False
        self.key = key  # (caller, login, url, conversation): who may use it for what
        self.owner = owner  # (caller, login): what the per-login cap counts
        self.opened_at = self.used_at = time.monotonic()
        self.turn: Any = None  # proxy.upstream.continuation.Turn once a request went out
        response = getattr(connection, "_response", None)  # the 101's headers (x-codex-*), when aiohttp keeps them
        self.headers: dict[str, str] = {name.lower(): value for name, value in response.headers.items()} \
            if response is not None else {}

    @property
    def open(self) -> bool:
        return not self.connection.closed

    async def send(self, payload: dict[str, Any]) -> int:
        """Send one ``response.create``; returns the bytes sent."""
        data = orjson.dumps(payload)
        try:
            await self.connection.send_frame(data, aiohttp.WSMsgType.TEXT)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise SocketClosed(type(exc).__name__) from None
        return len(data)

    async def receive(self) -> bytes:
        """The next event's JSON (a text frame, undecoded); raises :class:`SocketClosed` when the socket
        closes or breaks, or on a binary frame (the backend never sends one)."""
        message = await self.connection.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            return message.data
        raise SocketClosed(message.type.name)

    async def receive_all(self) -> list[bytes]:
        """The next event's JSON and every text frame already received after it, at once: an agent turn's
        answer comes as about fifty frames, and ``receive()`` pays its close, ping and concurrency checks for
        each one. Buffered text frames are taken from aiohttp's queue directly (its own ``read()``, which keeps
        the queue's accounting); any other frame waits for ``receive()``, which handles it as usual."""
        first = await self.receive()
        reader = getattr(self.connection, "_reader", None)
        buffer = getattr(reader, "_buffer", None)
        if not buffer:
            return [first]
        taken = [first]
        try:
            while buffer and buffer[0][0].type is aiohttp.WSMsgType.TEXT:
                taken.append((await reader.read()).data)
        except (AttributeError, IndexError, TypeError):  # another aiohttp: the frames come one call at a time
            pass
        return taken

    def close_soon(self) -> None:
        """Close without waiting for the handshake (a cancelled response must not hold its caller)."""
        task = asyncio.ensure_future(self.connection.close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Future] = set()

async def connect_socket(url: str, headers: Mapping[str, str], *, timeout: float, key: tuple, owner: tuple,
                         session: aiohttp.ClientSession) -> CodexSocket:
    """Open the socket; raises :class:`UpgradeRefused` or :class:`UpgradeAnswered`."""
    try:
        connection = await _connect(url, headers, timeout, session)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in ANSWERED:
            answer_headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
            raise UpgradeAnswered(exc.status, answer_headers, b"") from None
        raise UpgradeRefused(f"HTTP {exc.status}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise UpgradeRefused(type(exc).__name__) from None
    return CodexSocket(connection, key, owner, headers)


async def _connect(url: str, headers: Mapping[str, str], timeout: float,
                   session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    """The library call, alone so tests can refuse anything but loopback (tests never reach the network)."""
    return await session.ws_connect(url, headers=dict(headers), compress=0, max_msg_size=MAX_FRAME,
                                    decode_text=False, autoping=True, proxy=None,
                                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                                    receive_timeout=None, ssl=True)


def new_session(connect_seconds: float) -> aiohttp.ClientSession:
    """The pool's own session (its sockets are not pooled connections; this keeps the HTTP pool apart)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_seconds,
                                                               connect=connect_seconds),
                                 auto_decompress=False, trust_env=False)


def event_kind(data: bytes) -> bytes:
    """The ``type`` of one event's JSON, read without parsing when it comes first (as the backend writes it)."""
    if data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 9:
            return data[9:end]
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return b""
    kind = payload.get("type") if isinstance(payload, dict) else None
    return kind.encode() if isinstance(kind, str) else b""


def sse_frame(kind: bytes, data: bytes) -> bytes:
    """One socket event as the SSE frame the HTTP stream would have carried (one line of JSON)."""
    if b"\n" in data or b"\r" in data:  # pretty-printed JSON would break the SSE line
        data = orjson.dumps(orjson.loads(data))
    return b"event: " + kind + b"\ndata: " + data + b"\n\n"


def rate_limit_headers(data: bytes) -> dict[str, str]:
    """A ``codex.rate_limits`` event as the ``x-codex-*`` headers the HTTP answer carries (so the plan's
    windows reach the client and team mode's quota-aware fallback the same way over both transports)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    limits = payload.get("rate_limits") if isinstance(payload, dict) else None
    headers: dict[str, str] = {}
    if not isinstance(limits, dict):
        return headers
    for window in ("primary", "secondary"):
        entry = limits.get(window)
        if not isinstance(entry, dict):
            continue
        for field, name in (("used_percent", "used-percent"), ("window_minutes", "window-minutes"),
                            ("reset_at", "reset-at"), ("reset_after_seconds", "reset-after-seconds")):
            value = entry.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                headers[f"x-codex-{window}-{name}"] = f"{value:g}" if isinstance(value, float) else str(value)
    return headers
