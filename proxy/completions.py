"""``POST /v1/chat/completions``: validate, route, open upstream, then stream or aggregate.

Streaming is primed: the proxy waits (briefly) for the first translated event before it sends the
response head, so an upstream that fails right away still yields a proper HTTP status instead of an
error buried in a 200 stream. After that, every upstream read is translated and written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from .aggregate import CompletionAggregator
from .chat import ChatRequest, parse_chat_request
from .event_stream import EventStreamResponse
from .events import ChatEvent
from .json_response import json_response
from .stream_out import ChunkEncoder, new_completion_id
from .upstream import first_failure, translated_batches

# Longest wait for the first event before the response head is sent anyway (long silent reasoning).
PRIME_SECONDS = 3.0


async def create_chat_completion(request: Request) -> Response:
    state = request.app.state.subrelay
    chat = parse_chat_request(await request.body())
    route = state.router.resolve(chat.model)
    upstream = await state.upstream.open(route, chat)
    batches = translated_batches(upstream, route.provider.adapter.new_translator(chat))
    headers = {"x-subrelay-route": route.label}
    if chat.stream:
        return await _stream(chat, batches, headers)
    return await _aggregate(chat, batches, headers)


async def _aggregate(chat: ChatRequest, batches: AsyncIterator[list[ChatEvent]], headers: dict[str, str]) -> Response:
    aggregator = CompletionAggregator()
    try:
        async for batch in batches:
            aggregator.add(batch)
    finally:
        await batches.aclose()
    if aggregator.failure is not None:
        raise aggregator.failure.error
    return json_response(aggregator.result(new_completion_id(), chat.model), headers=headers)


async def _stream(chat: ChatRequest, batches: AsyncIterator[list[ChatEvent]], headers: dict[str, str]) -> Response:
    first, pending = await _prime(batches)
    error = first_failure(first)
    if error is not None:
        await batches.aclose()  # nothing is pending: a failure is an event, so priming ended on it
        raise error
    encoder = ChunkEncoder(new_completion_id(), chat.model, chat.include_usage)

    async def body() -> AsyncIterator[bytes]:
        yield encoder.start() + encoder.encode(first)
        if pending is not None:
            later = await pending
            if later is None:
                yield encoder.done()
                return
            yield encoder.encode(later)
        async for batch in batches:
            data = encoder.encode(batch)
            if data:
                yield data
            if encoder.ended:
                return
        yield encoder.done()

    async def close() -> None:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await batches.aclose()

    return EventStreamResponse(body(), on_close=close, headers=headers)


async def _prime(batches: AsyncIterator[list[ChatEvent]]) -> tuple[list[ChatEvent], asyncio.Task | None]:
    """Read until the first translated event, for at most :data:`PRIME_SECONDS`.

    Returns the events read and, if the wait timed out, the still-running read (which the streaming
    body awaits first). The read runs as a task and is shielded from the timeout so the upstream
    generator is never interrupted halfway through.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PRIME_SECONDS
    events: list[ChatEvent] = []
    while True:
        task = asyncio.ensure_future(anext(batches, None))
        try:
            batch = await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return events, task
        if batch is None:
            return events, None
        events += batch
        if events:
            return events, None
