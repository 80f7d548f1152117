"""An ASGI response for SSE that stops its producer the moment the client goes away.

Starlette's ``StreamingResponse`` notices a disconnect only on its next write, or cancels the body
inside an anyio scope where the body's own cleanup cannot await. This response watches for
``http.disconnect`` in a side task, cancels the producer, and then always runs ``on_close`` (closing
the upstream stream) outside the cancellation, so an abandoned answer stops costing upstream tokens.
Backpressure is natural: each chunk is sent (awaited) before the next upstream read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from proxy.errors import ProxyError, ServiceUnavailable
from proxy.observe.memory import STREAMS
from proxy.observe.metrics import OPEN_STREAMS
from proxy.observe.redact import get_logger

log = get_logger("subrelay.stream")

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class LastChunk(bytes):
    """A stream's last bytes, sent with the end of the response in one write to the client (the end
    costs the client a write of its own otherwise). A producer yields one only when it knows nothing
    can follow, from what it already has: a chunk is never held back to find out."""

    __slots__ = ()


class EventStreamResponse:
    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
        headers: dict[str, str] | None = None,
        error_frame: Callable[[ProxyError], bytes] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        # How this API tells a client its stream was cut short (the server is shutting down).
        self._error_frame = error_frame or (lambda error: b"data: " + error.to_json() + b"\n\n")
        self._headers = list(_HEADERS)
        for name, value in (headers or {}).items():
            self._headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    async def __call__(self, scope, receive, send) -> None:
        self._send = send
        producer = asyncio.current_task()
        disconnected = False

        def client_gone() -> None:
            nonlocal disconnected
            disconnected = True
            if producer is not None:
                producer.cancel()

        async def watch_for_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    client_gone()
                    return

        # The edge's guarded exchange already watches the client: it tells us (no second watcher task).
        on_gone = getattr(getattr(receive, "__self__", None), "on_gone", None)
        watcher = None
        if on_gone is not None:
            on_gone(client_gone)
        else:
            watcher = asyncio.create_task(watch_for_disconnect())
        started = False
        OPEN_STREAMS.inc()
        STREAMS.opened()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            started = True
            async for chunk in self._chunks:
                if type(chunk) is LastChunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not disconnected:
                if started:  # the server is stopping: end the stream so the client can tell
                    await self._end_with_error()
                raise
            if producer is not None:
                producer.uncancel()
            log.info("client disconnected; upstream stream cancelled")
        except OSError:
            log.info("client connection lost; upstream stream cancelled")
        finally:
            OPEN_STREAMS.dec()
            STREAMS.closed()
            if watcher is not None:
                watcher.cancel()
            else:
                on_gone(None)
            try:
                await asyncio.shield(self._on_close())
            except asyncio.CancelledError:
                if not disconnected:
                    raise

    async def _end_with_error(self) -> None:
        error = ServiceUnavailable("subrelay is shutting down; this stream was ended before it finished.",
                                   code="server_shutting_down")
        try:
            await self._send({"type": "http.response.body", "body": self._error_frame(error), "more_body": True})
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:  # the connection may be gone too
            pass
