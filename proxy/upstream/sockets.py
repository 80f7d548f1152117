"""The Codex upstream over its Responses WebSocket: a pool of sockets per person's login and conversation.

:meth:`SocketPool.open` is the transport's one entry point, beside the HTTP send in
:class:`proxy.upstream.client.UpstreamClient`: it takes the adapter's finished :class:`UpstreamRequest` (the
full Responses body as it would be POSTed) and returns what the HTTP send returns, a response with
``status_code``, ``headers``, ``aiter_bytes()`` (SSE bytes, so every translator and relay reads both
transports alike) and ``aclose()`` — or None, meaning "send it over HTTP" (``auto`` mode: the upgrade was
refused, or every socket this login may have is busy).

Rules:
- **Who.** A socket is keyed by the caller (team member or owner key), the login that signs (a hash of its
  ``Authorization``: another person's login, or a refreshed token, is another socket), the URL and the
  conversation (``prompt_cache_key``). A socket is never lent to another key.
- **What goes.** :func:`proxy.upstream.continuation.continuation` decides, from the socket's record,
  whether only the new items go with ``previous_response_id``; otherwise the full input goes.
- **Faults, unseen by the client.** ``websocket_connection_limit_reached`` and ``previous_response_not_found``
  as the first answer, or the socket dying before the answer's content began: a fresh socket and the full
  request, once each. Events before the content (``response.created``/``in_progress``) are held back until
  content arrives, so a retried turn shows the client one response, not two. A socket dying after content
  was relayed is a broken stream (as over HTTP): the client retries, in full, on a new socket.
- **Bounds.** At most ``per_login`` sockets per caller and login and ``total`` in all (a new one first
  closes an idle one; if all are busy the request goes over HTTP); an idle socket is closed after
  ``idle_seconds``, and none is reused past ``max_age_seconds`` (the backend ends them at 60 minutes).
  A client that goes away mid-answer closes its socket, which cancels the response upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from proxy.errors import UpstreamFailure, UpstreamOverloaded
from proxy.hub.caller import CALLER
from proxy.hub.sse import SSEEvent
from proxy.observe.redact import get_logger
from proxy.upstream.codex_socket import (
    CodexSocket,
    SocketClosed,
    UpgradeAnswered,
    UpgradeRefused,
    connect_socket,
    event_kind,
    new_session,
    rate_limit_headers,
    sse_frame,
    upgrade_headers,
    websocket_url,
)
from proxy.upstream.continuation import Turn, continuation, settings_of

log = get_logger("subrelay.sockets")

RETRY_FRESH = frozenset({"websocket_connection_limit_reached", "previous_response_not_found"})
_PREAMBLE = frozenset({b"response.created", b"response.in_progress"})
_SKIPPED = frozenset({b"codex.rate_limits"})  # read into headers; the SSE stream never carried it
_TERMINAL = frozenset({b"response.completed", b"response.done", b"response.incomplete", b"response.failed", b"error"})
_NOTED = _TERMINAL | {b"response.output_item.done"}  # what the next turn's continuation needs (see _note)
REFUSAL_SECONDS = 300.0  # after a refused upgrade, HTTP only for this long (Codex: for the session)


@dataclass(slots=True)
class SocketStats:
    """Counts for tests, metrics and the benchmark (no secrets)."""

    opened: int = 0
    incremental: int = 0
    full: int = 0
    retried: int = 0
    refused: int = 0
    bytes_sent: int = 0


class ErrorAnswer:
    """An error the socket answered with, shaped as the HTTP error response it stands for."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self._body = status, headers, body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        return None


class SocketPool:
    """Sockets to the Codex backend, per caller, login and conversation (see the module docstring)."""

    def __init__(self, *, mode: str = "auto", idle_seconds: float = 300.0, per_login: int = 16, total: int = 512,
                 connect_seconds: float = 10.0, first_event_seconds: float = 300.0,
                 max_age_seconds: float = 55 * 60.0) -> None:
        self.mode = mode  # "auto": HTTP when the socket cannot be used; "websocket": never HTTP
        self.idle_seconds, self.per_login, self.total = idle_seconds, per_login, total
        self.connect_seconds, self.first_event_seconds, self.max_age_seconds = (
            connect_seconds, first_event_seconds, max_age_seconds)
        self.idle: dict[tuple, list[CodexSocket]] = {}
        self.counts: dict[tuple, int] = {}  # owner → sockets open or opening
        self.open_count = 0
        self.refused_until: dict[str, float] = {}
        self.stats = SocketStats()
        self._reaper: asyncio.Task | None = None
        self._session: Any = None  # aiohttp.ClientSession, made on first use (in the serving loop)

    async def open(self, request: Any) -> Any:
        """Send ``request`` (a Codex Responses request marked ``websocket`` by its adapter) over a socket."""
        url = websocket_url(request.url)
        if self.mode == "auto" and self.refused_until.get(url, 0.0) > time.monotonic():
            return None
        body: dict[str, Any] = request.context["body"]
        headers, owner, key = _identity(request, url)
        self._start_reaper()
        fresh = False
        for _attempt in range(3):
            socket, delta = (None, None) if fresh else self._take_idle(key, body)
            if socket is None:
                try:
                    socket = await self._connect(url, headers, key, owner)
                except UpgradeRefused as exc:
                    return self._refused(url, str(exc))
                except UpgradeAnswered as exc:
                    return ErrorAnswer(exc.status, dict(exc.headers), exc.body)
                if socket is None:
                    if self.mode == "auto":
                        return None
                    raise UpstreamOverloaded("Every Codex WebSocket this login may open is busy "
                                             "(SUBRELAY_CODEX_SOCKETS_PER_LOGIN / _TOTAL).", code="server_is_overloaded")
            outcome = await self._start(socket, body, delta)
            if isinstance(outcome, SocketAnswer | ErrorAnswer):
                return outcome
            self.stats.retried += 1
            log.info("codex socket: %s; sending the turn in full on a new socket", outcome)
            fresh = True
        raise UpstreamFailure("The Codex WebSocket kept failing before answering.", code="upstream_socket_failed")

    async def prewarm(self, request: Any) -> bool:
        """Relay a client's ``generate: false``: the backend loads the request on the conversation's socket
        and answers with an empty response, which the next turn continues with only what is new."""
        url = websocket_url(request.url)
        if self.refused_until.get(url, 0.0) > time.monotonic():
            return False
        body: dict[str, Any] = request.context["body"]
        headers, owner, key = _identity(request, url)
        self._start_reaper()
        socket = self._take_idle(key, body)[0]
        try:
            socket = socket or await self._connect(url, headers, key, owner)
        except UpgradeRefused as exc:
            self.stats.refused += 1
            self.refused_until[url] = time.monotonic() + REFUSAL_SECONDS
            log.info("codex socket refused (%s); prewarm skipped", exc)
            return False
        except UpgradeAnswered:
            return False
        if socket is None:
            return False
        socket.turn = None
        try:
            self.stats.bytes_sent += await socket.send({"type": "response.create", **body, "generate": False})
            async with asyncio.timeout(self.first_event_seconds):
                while True:
                    data = await socket.receive()
                    kind = event_kind(data)
                    if kind in _TERMINAL:
                        break
        except (SocketClosed, OSError, TimeoutError):
            self.discard(socket)
            return False
        response = orjson.loads(data).get("response") if kind == b"response.completed" else None
        if not isinstance(response, dict) or not response.get("id"):
            self.discard(socket)
            return False
        socket.turn = Turn(settings_of(body), body.get("input") or [], response["id"], [], prewarm=True)
        self.release(socket)
        return True

    async def _start(self, socket: CodexSocket, body: dict[str, Any], delta: list[Any] | None = None) -> Any:
        """Send the turn and read up to its first event; a str outcome means "retry on a fresh socket".
        ``delta``: the items after the socket's last response (:meth:`_take_idle` worked them out), or None:
        the turn goes in full (always so on a new socket, which continues nothing)."""
        payload: dict[str, Any] = {"type": "response.create", **body}
        if delta is not None:
            payload["previous_response_id"] = socket.turn.response_id
            payload["input"] = delta
            self.stats.incremental += 1
        else:
            self.stats.full += 1
        socket.turn = Turn(settings_of(body), body.get("input") or [])
        socket.used_at = time.monotonic()
        try:
            self.stats.bytes_sent += await socket.send(payload)
            headers = dict(socket.headers)
            while True:
                async with asyncio.timeout(self.first_event_seconds):
                    data = await socket.receive()
                kind = event_kind(data)
                if kind in _SKIPPED:
                    headers.update(rate_limit_headers(data))
                    continue
                break
        except (SocketClosed, OSError) as exc:
            self.discard(socket)
            return f"the socket closed before answering ({type(exc).__name__})"
        except TimeoutError:
            self.discard(socket)
            raise UpstreamFailure("The Codex WebSocket sent nothing after the request.", code="upstream_timeout") from None
        if kind == b"error":
            error = _wrapped_error(data)
            code = (error.get("error") or {}).get("code") if isinstance(error.get("error"), dict) else None
            self.discard(socket)  # after an error the connection is dropped (as Codex does)
            if code in RETRY_FRESH:
                return f"the backend answered {code}"
            status = error.get("status") or error.get("status_code")
            if isinstance(status, int) and status >= 400:
                error_headers = {str(k).lower(): str(v) for k, v in (error.get("headers") or {}).items()
                                 if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
                return ErrorAnswer(status, {**headers, **error_headers},
                                   orjson.dumps({"error": error.get("error") or {}}))
        return SocketAnswer(self, socket, body, headers, data, kind)

    def _take_idle(self, key: tuple, body: dict[str, Any]) -> tuple[CodexSocket | None, list[Any] | None]:
        """The key's idle socket that continues this request and the continuation's items, else its most
        recent one (and None: the turn goes in full), else (None, None)."""
        sockets = self.idle.get(key)
        if not sockets:
            return None, None
        now = time.monotonic()
        for socket in [s for s in sockets if not s.open or now - s.opened_at > self.max_age_seconds]:
            sockets.remove(socket)
            self.discard(socket)
        if not sockets:
            self.idle.pop(key, None)
            return None, None
        chosen, delta = sockets[-1], None
        for socket in reversed(sockets):
            delta = continuation(socket.turn, body)
            if delta is not None:
                chosen = socket
                break
        sockets.remove(chosen)
        if not sockets:
            self.idle.pop(key, None)
        return chosen, delta

    async def _connect(self, url: str, headers: dict[str, str], key: tuple, owner: tuple) -> CodexSocket | None:
        """A new socket within the caps (an idle one is closed to make room); None when all are busy."""
        while self.counts.get(owner, 0) >= self.per_login or self.open_count >= self.total:
            victim = self._oldest_idle(owner if self.counts.get(owner, 0) >= self.per_login else None)
            if victim is None:
                return None
            self._remove_idle(victim)
            self.discard(victim)
        self.counts[owner] = self.counts.get(owner, 0) + 1  # reserved before the await: caps hold under races
        self.open_count += 1
        try:
            if self._session is None or self._session.closed:
                self._session = new_session(self.connect_seconds)
            socket = await connect_socket(url, headers, timeout=self.connect_seconds, key=key, owner=owner,
                                          session=self._session)
        except BaseException:
            self._forget(owner)
            raise
        self.stats.opened += 1
        return socket

    def _refused(self, url: str, why: str) -> None:
        self.stats.refused += 1
        if self.mode != "auto":
            raise UpstreamFailure(f"The Codex backend refused its WebSocket ({why}); SUBRELAY_CODEX_TRANSPORT="
                                  f"websocket forbids HTTP.", code="upstream_socket_refused")
        log.info("codex socket refused (%s); using HTTP for %d s", why, int(REFUSAL_SECONDS))
        self.refused_until[url] = time.monotonic() + REFUSAL_SECONDS
        return None

    def release(self, socket: CodexSocket) -> None:
        """A socket whose response completed goes back to its key's idle list."""
        if socket.gone:
            return
        if not socket.open:
            self.discard(socket)
            return
        socket.used_at = time.monotonic()
        self.idle.setdefault(socket.key, []).append(socket)

    def discard(self, socket: CodexSocket) -> None:
        """Close a socket for good (a cancelled or broken response, an idle or old one)."""
        if socket.gone:
            return
        socket.gone = True
        socket.turn = None
        socket.close_soon()
        self._forget(socket.owner)

    def _forget(self, owner: tuple) -> None:
        self.open_count -= 1
        left = self.counts.get(owner, 0) - 1
        if left > 0:
            self.counts[owner] = left
        else:
            self.counts.pop(owner, None)

    def _oldest_idle(self, owner: tuple | None) -> CodexSocket | None:
        candidates = [s for sockets in self.idle.values() for s in sockets if owner is None or s.owner == owner]
        return min(candidates, key=lambda s: s.used_at, default=None)

    def _remove_idle(self, socket: CodexSocket) -> None:
        sockets = self.idle.get(socket.key, [])
        if socket in sockets:
            sockets.remove(socket)
            if not sockets:
                self.idle.pop(socket.key, None)

    def reap(self) -> int:
        """Close idle sockets past the idle bound or the age bound; returns how many."""
        now = time.monotonic()
        stale = [s for sockets in self.idle.values() for s in sockets
                 if now - s.used_at >= self.idle_seconds or now - s.opened_at > self.max_age_seconds or not s.open]
        for socket in stale:
            self._remove_idle(socket)
            self.discard(socket)
        return len(stale)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.idle_seconds / 2, 30.0)))
            self.reap()

    async def close(self) -> None:
        """Close every socket (the app is stopping)."""
        if self._reaper is not None:
            self._reaper.cancel()
        for sockets in list(self.idle.values()):
            for socket in list(sockets):
                self.discard(socket)
        self.idle.clear()
        if self._session is not None:
            await asyncio.sleep(0)  # let the sockets' closes start before the session goes
            await self._session.close()


def socket_pool(settings: Any) -> SocketPool | None:
    """The pool the settings ask for, or None when the Codex upstream is HTTP only."""
    if settings.codex_transport == "http":
        return None
    bounds = settings.codex_sockets
    return SocketPool(mode=settings.codex_transport, idle_seconds=bounds.idle_seconds, per_login=bounds.per_login,
                      total=bounds.total, connect_seconds=settings.timeouts.connect,
                      first_event_seconds=settings.timeouts.read)


class SocketAnswer:
    """One response read from a socket, as SSE bytes; returns the socket to the pool when it completed."""

    status_code = 200

    def __init__(self, pool: SocketPool, socket: CodexSocket, body: dict[str, Any], headers: dict[str, str],
                 first: bytes, first_kind: bytes) -> None:
        self.pool, self.socket, self.body, self.headers = pool, socket, body, headers
        self._first: tuple[bytes, bytes] | None = (first_kind, first)
        self._output: dict[int, Any] = {}
        self._done = False  # the terminal event was read
        self._completed_id = ""
        self._closed = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The events as SSE (what a byte relay sends on), one piece per batch of :meth:`aiter_events`."""
        async for batch in self._batches():
            yield b"".join([sse_frame(kind, data) for kind, data in batch])

    async def aiter_events(self) -> AsyncIterator[list[SSEEvent]]:
        """The events themselves, one list per batch: a translator reads them without SSE text being built
        here and parsed again (:func:`proxy.upstream.client.translated_batches` prefers this)."""
        async for batch in self._batches():
            yield [SSEEvent(kind.decode(), data) for kind, data in batch]

    async def _batches(self) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """(kind, JSON) of every event, every event already received in one batch (as an HTTP read hands
        over what is buffered): a translator's work is per read, and the backend sends one frame per delta."""
        held: list[tuple[bytes, bytes]] = []  # events before the content: shown once the content begins
        batch: list[tuple[bytes, bytes]] = []
        content = False
        retries = 0
        frames: list[bytes] = []  # received, not yet looked at (everything one read of the socket had)
        position = 0
        while not self._done:
            if self._first is not None:
                kind, data = self._first
                self._first = None
            else:
                if position == len(frames):
                    if batch:
                        yield batch
                        batch = []
                    try:
                        frames, position = await self.socket.receive_all(), 0
                    except (SocketClosed, OSError) as exc:
                        frames, position = [], 0
                        self.pool.discard(self.socket)
                        if content or retries:
                            raise httpx.ReadError("the Codex WebSocket closed before response.completed") from exc
                        retries += 1
                        held.clear()
                        await self._resend()
                        continue
                data = frames[position]
                position += 1
                kind = event_kind(data)
            if kind in _SKIPPED:
                continue
            if kind in _NOTED:
                self._note(kind, data)
            if not content and kind in _PREAMBLE and not self._done:
                held.append((kind, data))
                continue
            if not content:
                content = True
                batch += held
                held.clear()
            batch.append((kind, data))
        if batch:
            yield batch

    async def _resend(self) -> None:
        """The socket died before any content: the same turn, in full, on a new socket (once)."""
        self.pool.stats.retried += 1
        outcome = await self.pool._start(await self._new_socket(), self.body)
        if not isinstance(outcome, SocketAnswer):
            raise httpx.ReadError("the Codex WebSocket failed again before answering")
        self.socket, self._first, self._output = outcome.socket, outcome._first, {}
        outcome._closed = True

    async def _new_socket(self) -> CodexSocket:
        url = self.socket.key[2]
        try:
            socket = await self.pool._connect(url, self.socket.upgrade, self.socket.key, self.socket.owner)
        except (UpgradeRefused, UpgradeAnswered) as exc:
            raise httpx.ReadError(f"could not reopen the Codex WebSocket ({type(exc).__name__})") from None
        if socket is None:
            raise httpx.ReadError("no Codex WebSocket is free to resend the turn")
        return socket

    def _note(self, kind: bytes, data: bytes) -> None:
        """Keep what the next turn's continuation needs: the output items and the completed id."""
        if kind == b"response.output_item.done":
            payload = orjson.loads(data)
            index = payload.get("output_index")
            self._output[index if isinstance(index, int) else len(self._output)] = payload.get("item")
        elif kind in _TERMINAL:
            self._done = True
            if kind == b"response.completed":
                payload = orjson.loads(data)
                response = payload.get("response") if isinstance(payload.get("response"), dict) else {}
                self._completed_id = response.get("id") or ""
                if not self._output and isinstance(response.get("output"), list):
                    self._output = dict(enumerate(response["output"]))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        turn = self.socket.turn
        if self._done and self._completed_id and turn is not None:
            turn.response_id = self._completed_id
            turn.output = [self._output[i] for i in sorted(self._output)]
            self.pool.release(self.socket)
        else:  # cancelled, failed or broken: closing the socket cancels the response upstream
            self.pool.discard(self.socket)


def _wrapped_error(data: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _identity(request: Any, url: str) -> tuple[dict[str, str], tuple, tuple]:
    """The upgrade headers, the owner (caller, login) and the socket key (owner, URL, conversation)."""
    owner = (CALLER.get().scope_id, _login_hash(request.headers))
    key = (*owner, url, str(request.context["body"].get("prompt_cache_key") or ""))
    return upgrade_headers(request.headers), owner, key


def _login_hash(headers: dict[str, str]) -> str:
    """Which login signs: a digest of its bearer and account (never the token itself)."""
    digest = hashlib.sha256()
    for name in ("Authorization", "chatgpt-account-id"):
        digest.update((headers.get(name) or "").encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]

