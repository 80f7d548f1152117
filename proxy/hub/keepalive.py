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
    of silence. The reads run in one task of their own (:class:`_Reader`), so a keep-alive never
    interrupts the upstream mid-read, and one chunk is read only when the previous one has been taken
    (no read-ahead: a slow client still holds back the upstream). ``chunks`` is closed when this
    generator is."""
    wait = KEEPALIVE_SECONDS if interval is None else interval
    reader = _Reader(chunks)
    try:
        while True:
            chunk = await reader.next(wait)
            if chunk is _SILENT:
                data = keepalive()
                if data:
                    yield data
                continue
            if chunk is None:
                return
            yield chunk
    finally:
        await reader.stop()
        await chunks.aclose()


_SILENT = object()  # what _Reader.next returns when the wait for a chunk ran out


class _Reader:
    """The one task that reads a stream for :func:`paced`, a chunk at a time on request.

    It replaced a task and an ``asyncio.wait`` per chunk (about 7% of a 50-delta stream's instructions,
    issue 21): per chunk this costs two futures and a timer handle. The read's outcome (a chunk, None at
    the end, or the exception) lands in ``answer``; a wait that runs out moves the read to a fresh
    ``answer`` and reports silence.
    """

    __slots__ = ("loop", "chunks", "demand", "answer", "task")

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.loop = asyncio.get_running_loop()
        self.chunks = chunks
        self.demand = self.loop.create_future()  # set when the consumer wants the next chunk
        self.answer: asyncio.Future | None = None  # the chunk asked for, while it is awaited
        self.task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await self.demand
                self.demand = self.loop.create_future()
                chunk = await anext(self.chunks, None)
                self._answer(chunk)
                if chunk is None:
                    return
        except Exception as exc:  # the consumer raises it where it asked for the chunk
            answer = self.answer
            if answer is not None and not answer.done():
                answer.set_exception(exc)
        except asyncio.CancelledError:
            answer = self.answer
            if answer is not None and not answer.done():
                answer.cancel()
            raise

    def _answer(self, chunk: bytes | None) -> None:
        answer = self.answer
        if answer is not None and not answer.done():
            answer.set_result(chunk)

    def _silence(self, answer: asyncio.Future) -> None:
        if not answer.done():
            self.answer = self.loop.create_future()  # the read goes on; its chunk lands here
            answer.set_result(_SILENT)

    async def next(self, wait: float) -> object:
        """The next chunk (None at the end), or :data:`_SILENT` after ``wait`` seconds without one."""
        answer = self.answer
        if answer is None:
            answer = self.answer = self.loop.create_future()
            if self.task.done():  # the reader ended (it never does before the end): nothing more comes
                self.answer = None
                return None
            self.demand.set_result(None)
        if not answer.done():
            handle = self.loop.call_later(wait, self._silence, answer)
            try:
                await answer  # a cancelled consumer cancels this future only; stop() ends the read
            finally:
                handle.cancel()
        chunk = answer.result()
        if chunk is not _SILENT:
            self.answer = None
        return chunk

    async def stop(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


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
