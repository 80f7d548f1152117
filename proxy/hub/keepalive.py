"""The timing contract streaming clients hold a proxy to (the Codex CLI most strictly).

Codex gives a server 60 s to send a response head and, once streaming, drops a stream whose parser
yields no *event* for its idle timeout (SSE comments do not count). So, whatever the upstream does:

- the head is sent within :data:`HEAD_SECONDS` (:func:`head_within`): an upstream that answers
  sooner, even with an error, is answered as today (an error is still an HTTP status); one that
  does not is answered ``200`` at once and its outcome (events, or a failure) follows in the stream;
- a keep-alive the client's parser sees as an event is sent after every :data:`KEEPALIVE_SECONDS`
  of upstream silence (:func:`paced`): ``response.in_progress`` on Responses, ``ping`` on Messages,
  a comment on Chat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from proxy.errors import InternalError, ProxyError
from proxy.hub.event_stream import EventStreamResponse

T = TypeVar("T")

HEAD_SECONDS = 20.0  # longest wait for the upstream before the head goes out anyway (Codex allows 60 s)
KEEPALIVE_SECONDS = 10.0  # longest silence a client sees (Codex's idle timer wants an event every 15 s or less)
CHAT_KEEPALIVE = b": keep-alive\n\n"


class Late(Generic[T]):
    """An upstream still opening after :data:`HEAD_SECONDS`: the task that opens it."""

    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task


async def head_within(opening: Awaitable[T], seconds: float | None = None) -> T | Late[T]:
    """``opening``'s result (or its error) if it is ready within ``seconds`` (default
    :data:`HEAD_SECONDS`), else :class:`Late` with the task still running."""
    task = asyncio.ensure_future(opening)
    try:
        done, _ = await asyncio.wait({task}, timeout=HEAD_SECONDS if seconds is None else seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    return Late(task)


async def paced(chunks: AsyncIterator[bytes], keepalive: Callable[[], bytes],
                interval: float | None = None) -> AsyncIterator[bytes]:
    """``chunks``, with ``keepalive()`` after every ``interval`` (default :data:`KEEPALIVE_SECONDS`)
    of silence. Each read runs as a task so a timeout never interrupts the upstream mid-read; this
    costs one task per chunk. ``chunks`` is closed when this generator is."""
    wait = KEEPALIVE_SECONDS if interval is None else interval
    pending: asyncio.Task | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(chunks, None))
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                data = keepalive()
                if data:
                    yield data
                continue
            chunk, pending = pending.result(), None
            if chunk is None:
                return
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await chunks.aclose()


def late_stream(late: Late[T], *, start: bytes, keepalive: Callable[[], bytes], fail: Callable[[ProxyError], bytes],
                then: Callable[[T], AsyncIterator[bytes]], headers: dict[str, str] | None = None,
                on_close: Callable[[T], Awaitable[None]] | None = None) -> EventStreamResponse:
    """A ``200`` stream sent before the upstream answered: ``start``, keep-alives while it opens,
    then ``then(result)``, or ``fail(error)`` when opening failed after all."""
    opened: dict[str, AsyncIterator[bytes]] = {}

    async def waiting() -> AsyncIterator[bytes]:
        await asyncio.wait({late.task})
        try:
            result = late.task.result()
        except ProxyError as error:
            yield fail(error)
            return
        except Exception as exc:  # a bug: still an ending the client's parser understands
            yield fail(InternalError(f"Internal proxy error ({type(exc).__name__}); see the subrelay log."))
            return
        stream = opened["stream"] = then(result)
        async for data in stream:
            yield data

    async def body() -> AsyncIterator[bytes]:
        if start:
            yield start
        async for data in paced(waiting(), keepalive):
            if data:
                yield data

    stream_body = body()

    async def close() -> None:
        await stream_body.aclose()
        if not late.task.done():
            late.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await late.task
        stream = opened.get("stream")
        if stream is not None:
            await stream.aclose()
        elif on_close is not None and late.task.done() and not late.task.cancelled() \
                and late.task.exception() is None:
            await on_close(late.task.result())

    return EventStreamResponse(stream_body, on_close=close, headers=headers, error_frame=fail)
