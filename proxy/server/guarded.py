"""One request's guarded exchange with its client: the body counted and timed on the way in, a client
that goes away before the answer starts noticed (its handler and upstream call cancelled), and on the
way out a client that takes nothing for the stall time dropped (the stream's upstream cancelled too).
The edge (:mod:`proxy.server.edge`) wraps every HTTP request in one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from proxy.errors import PayloadTooLarge, ProxyError
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger

from proxy.config.settings import Limits


class Edge(Protocol):
    """What an exchange needs of the edge that made it (:class:`proxy.server.edge.EdgeMiddleware`): its
    limits. A protocol, so this module and the edge do not import each other."""

    limits: Limits

log = get_logger("subrelay.edge")
_EXPOSED_HEADERS = b"x-subrelay-route, x-request-id, retry-after"


class ClientWentAway(ProxyError):
    """The client disconnected while sending its request (nobody is left to read an answer)."""

    status_code = 499


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than this proxy accepts ({limit} bytes; SUBRELAY_MAX_BODY_BYTES).")


def cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin), (b"vary", b"origin"),
            (b"access-control-expose-headers", _EXPOSED_HEADERS)]


class GuardedExchange:
    """One request's guarded ``receive``/``send``: counts and times the body, and once the body is in,
    watches for the client going away (cancelling the handler if no answer has started yet).

    Costs are kept per request, not per byte: one timer bounds the whole body read, and the
    disconnect watcher starts only if the request is still running after :data:`WATCH_AFTER`
    seconds (or when a stream asks), so a quick answer never pays for a task.
    """

    __slots__ = ("edge", "scope", "_receive", "_send", "cors", "task", "received", "body_done", "gone",
                 "started", "finished", "cancelled_by_us", "body_timed_out", "_timer", "_watcher", "_arm", "record",
                 "_writing", "_write_timer", "deadline", "write_stalled", "_on_gone")

    WATCH_AFTER = 0.05

    def __init__(self, edge: Edge, scope, receive, send, cors: bytes | None) -> None:
        self.edge, self.scope, self._receive, self._send, self.cors = edge, scope, receive, send, cors
        self.record: RequestRecord = scope["subrelay.record"]
        self.task = asyncio.current_task()
        self.received = 0
        self.body_done = scope["method"] in ("GET", "HEAD")
        self.gone: asyncio.Event | None = None
        self.started = self.finished = self.cancelled_by_us = self.body_timed_out = False
        self._watcher: asyncio.Task | None = None
        self._arm: asyncio.TimerHandle | None = None
        self._writing: float | None = None  # when the send to the client now blocked began
        self._write_timer: asyncio.TimerHandle | None = None
        self.deadline = time.monotonic() + edge.limits.request_seconds  # the whole exchange, writes included
        self.write_stalled = False
        self._on_gone: Callable[[], None] | None = None
        loop = asyncio.get_running_loop()
        self._timer = None if self.body_done else loop.call_later(edge.limits.body_read_seconds, self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._timer = None
        if not self.body_done and not self.started and self.task is not None:
            self.body_timed_out = self.cancelled_by_us = True
            self.task.cancel()

    async def receive(self):
        if self.body_done:
            self._start_watching()
            await self.gone.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.edge.limits.max_body_bytes:
                raise too_large(self.edge.limits.max_body_bytes)
            if not message.get("more_body", False):
                self.body_done = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self._arm = asyncio.get_running_loop().call_later(self.WATCH_AFTER, self._start_watching)
        elif message["type"] == "http.disconnect":
            raise ClientWentAway("The client went away while sending the request.")
        return message

    def on_gone(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` when the client disconnects (None: no longer). A streamed response uses
        this instead of a watcher task of its own that would wait on :meth:`receive`: one task per
        request watches the client. The body must have been read."""
        self._on_gone = callback
        if callback is None:
            return
        self._start_watching()
        if self.gone is not None and self.gone.is_set():  # gone already: tell it as the watcher would have
            asyncio.get_running_loop().call_soon(self._tell_gone)

    def _tell_gone(self) -> None:
        callback = self._on_gone
        if callback is not None:
            callback()

    def _start_watching(self) -> None:
        if self._watcher is None and not self.finished:
            self.gone = asyncio.Event()
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                if not self.started and self.task is not None:
                    self.cancelled_by_us = True
                    self.task.cancel()
                self._tell_gone()
                return

    async def send(self, message) -> None:
        """The one wrapper around the server's send: response state, the request id, CORS, and the
        timings of the request's log line (one layer, since it runs for every streamed chunk)."""
        if message["type"] == "http.response.start":
            self.started = True
            record = self.record
            record.status = message["status"]
            extra = [(b"x-request-id", record.request_id.encode())]
            if self.cors is not None:
                extra += cors_headers(self.cors)
            if self.received and not self.body_done:  # answered before reading the whole body: close after
                extra.append((b"connection", b"close"))
            if extra:
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
        else:
            if self.record.first_byte is None and message.get("body"):
                self.record.first_byte = time.perf_counter()
            if not message.get("more_body", False):
                self.finished = True
            elif self._write_timer is None:
                self._watch_writes()
        self._writing = time.monotonic()  # read by the write watch: a send that never returns is a stall
        try:
            await self._send(message)
        finally:
            self._writing = None

    def _watch_writes(self) -> None:
        """One timer per streamed response (not one per chunk): every quarter of the stall limit (at
        most 1 s) it checks whether a send to the client has been blocked for the stall limit, or past
        the request's deadline."""
        stall = self.edge.limits.stall_seconds
        self._write_timer = asyncio.get_running_loop().call_later(min(1.0, stall / 4), self._check_write)

    def _check_write(self) -> None:
        self._write_timer = None
        if self.finished and self._writing is None:
            return
        writing = self._writing
        if writing is not None:
            now = time.monotonic()
            if now - writing >= self.edge.limits.stall_seconds or now >= self.deadline:
                self._drop_stalled_client(now - writing)
                return
        self._watch_writes()

    def _drop_stalled_client(self, blocked: float) -> None:
        """The client takes nothing: close its connection, which ends the response the way a
        disconnect does (the stream's producer and its upstream call are cancelled)."""
        self.write_stalled = True
        self.record.note(f"client read nothing for {blocked:.1f} s; dropped")
        log.warning("a client read nothing for %.1f s (SUBRELAY_STALL_TIMEOUT or SUBRELAY_REQUEST_TIMEOUT); "
                    "its connection was dropped and the upstream call cancelled (%s)", blocked, self.scope["path"])
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()  # the blocked send returns and the server reports the disconnect
        elif self.task is not None:
            self.cancelled_by_us = True
            self.task.cancel()

    def close(self) -> None:
        for handle in (self._timer, self._arm, self._write_timer):
            if handle is not None:
                handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
