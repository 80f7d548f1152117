"""One translated answer streamed to a client in its own format, whatever that format is.

The Responses and Messages endpoints (and any later one) differ only in their encoder; priming,
pacing with keep-alive pings, ending cleanly and closing the upstream first are the same, so they
live here once. (Chat Completions keeps its own tighter loop: it is the hot path.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from proxy.hub import keepalive
from proxy.hub.encoder import AnswerEncoder
from proxy.hub.event_stream import EventStreamResponse
from proxy.hub.events import AnswerEvent, first_failure
from proxy.hub.priming import prime


async def drain(batches: AsyncIterator[list[AnswerEvent]], add: Callable[[list[AnswerEvent]], object]) -> None:
    """Feed every batch to ``add`` (a non-streaming answer), closing the upstream whatever happens."""
    try:
        async for batch in batches:
            add(batch)
    finally:
        await batches.aclose()


async def stream_encoded(batches: AsyncIterator[list[AnswerEvent]], encoder: AnswerEncoder, headers: dict[str, str], *,
                         ping: bytes | Callable[[], bytes] | None = None, ping_seconds: float | None = None,
                         on_complete: Callable[[], None] | None = None) -> EventStreamResponse:
    """Prime (a failure before the first event is still an HTTP error), then stream; ``ping`` is sent
    (bytes, or a function making them) whenever the upstream has been silent for ``ping_seconds``;
    ``on_complete`` runs after a clean end."""
    first, pending = await prime(batches)
    error = first_failure(first)
    if error is not None:
        await batches.aclose()
        raise error
    reads: dict[str, asyncio.Task | None] = {"task": pending}  # the read in flight, for close()

    async def body() -> AsyncIterator[bytes]:
        yield encoder.start() + encoder.encode(first)
        interval = (keepalive.KEEPALIVE_SECONDS if ping_seconds is None else ping_seconds) if ping else None
        async for batch in _paced(batches, reads, interval):
            data = (ping() if callable(ping) else ping) if batch is None else encoder.encode(batch)
            if data:
                yield data
            if encoder.ended:
                return
        yield encoder.finish()
        if on_complete is not None:
            on_complete()

    async def close() -> None:
        task = reads["task"]
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await batches.aclose()

    return EventStreamResponse(body(), on_close=close, headers=headers, error_frame=encoder.fail)


async def encoded_frames(batches: AsyncIterator[list[AnswerEvent]], encoder, finish: Callable[[], bytes], *,
                         head: bytes = b"", after: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
    """A translated answer's frames, for a stream whose response head went out already (the late
    path): ``head``, each batch encoded until the encoder has ended, then ``finish()`` and ``after()``.
    The batches (and with them the upstream) are closed whatever happens."""
    try:
        if head:
            yield head
        async for batch in batches:
            data = encoder.encode(batch)
            if data:
                yield data
            if encoder.ended:
                return
        yield finish()
        if after is not None:
            after()
    finally:
        await batches.aclose()


async def _paced(batches: AsyncIterator[list[AnswerEvent]], reads: dict[str, asyncio.Task | None],
                 interval: float | None) -> AsyncIterator[list[AnswerEvent] | None]:
    """The batches, and ``None`` after every ``interval`` of upstream silence. A read left pending by
    priming is awaited first; reads run as tasks kept in ``reads`` only when pinging needs them."""
    while True:
        task = reads["task"]
        if task is None and interval is None:
            batch = await anext(batches, None)
        else:
            if task is None:
                task = reads["task"] = asyncio.ensure_future(anext(batches, None))
            done, _ = await asyncio.wait({task}, timeout=interval)
            if not done:
                yield None
                continue
            batch = task.result()
            reads["task"] = None
        if batch is None:
            return
        yield batch
