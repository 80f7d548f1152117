"""``POST /v1/chat/completions``: validate, route, open upstream (with fallbacks), stream or aggregate.

Fallbacks and cooldowns are :mod:`proxy.upstream.dispatch`'s; once the response has started, the client sees
exactly one answer.

Translated streams are primed: the proxy waits (briefly) for the first translated event before it
sends the response head, so an upstream that fails right away still yields a proper HTTP status (or
a fallback) instead of an error buried in a 200 stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from proxy.doors.chat.aggregate import CompletionAggregator
from proxy.doors.chat.request import parse_chat_request
from proxy.doors.chat.stream import ChunkEncoder, new_completion_id
from proxy.hub.encoded_stream import encoded_frames
from proxy.hub.event_stream import EventStreamResponse, LastChunk
from proxy.hub.events import AnswerEvent, StreamTranslator, first_failure
from proxy.hub.json_response import json_response
from proxy.hub.request_body import client_body
from proxy.hub.keepalive import CHAT_KEEPALIVE, Late, head_within, late_stream, paced
from proxy.hub.model import ModelRequest
from proxy.hub.priming import prime
from proxy.observe.redact import get_logger
from proxy.upstream.client import (
    MAX_UPSTREAM_BODY,
    StreamClock,
    passthrough_chunks,
    read_whole,
    translated_batches,
)
from proxy.upstream.dispatch import Opened, open_with_fallbacks

log = get_logger("subrelay.completions")



async def create_chat_completion(request: Request) -> Response:
    state = request.app.state.subrelay
    chat = parse_chat_request(await client_body(request))
    routes = state.router.candidates(chat.model)
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    opening = open_with_fallbacks(state.upstream, state.cooldowns, routes, chat, clock, request.scope.get("subrelay.record"))
    if not chat.stream:
        opened = await opening
    else:
        opened = await head_within(opening)
        if isinstance(opened, Late):
            return _late(opened, chat, request.scope.get("subrelay.record"))
    headers = opened.client_headers()
    adapter = opened.route.provider.adapter
    if getattr(adapter, "passthrough_format", None) == "chat":
        return await _relay(opened, chat, headers)
    translator = adapter.new_translator(chat)
    batches = translated_batches(opened.response, translator, clock, request.scope.get("subrelay.record"))
    if chat.stream:
        return await _stream(chat, batches, headers, translator)
    return await _aggregate(chat, batches, headers)


async def _relay(opened: Opened, chat: ModelRequest, headers: dict[str, str]) -> Response:
    """The upstream speaks Chat Completions already: hand its bytes to the client unchanged."""
    if chat.stream:
        body = _paced(passthrough_chunks(opened.response, opened.clock, record=opened.record))

        async def close() -> None:
            await body.aclose()
            await opened.response.aclose()

        return EventStreamResponse(body, on_close=close, headers=headers)
    body = await read_whole(opened.response, opened.clock, MAX_UPSTREAM_BODY, opened.record)
    return Response(body, status_code=200, headers=headers, media_type="application/json")


async def _aggregate(chat: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str]) -> Response:
    aggregator = CompletionAggregator()
    try:
        async for batch in batches:
            aggregator.add(batch)
    finally:
        await batches.aclose()
    if aggregator.failure is not None:
        raise aggregator.failure.error
    return json_response(aggregator.result(new_completion_id(), chat.model), headers=headers)


async def _stream(chat: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str],
                  translator: StreamTranslator) -> Response:
    first, pending = await prime(batches)
    error = first_failure(first)
    if error is not None:
        await batches.aclose()  # nothing is pending: a failure is an event, so priming ended on it
        raise error
    encoder = ChunkEncoder(new_completion_id(), chat.model, chat.include_usage)

    async def answer() -> AsyncIterator[bytes]:
        # A finished translator means the batch in hand is the answer's last: it goes out with [DONE] and
        # the end of the response in one write (an upstream read often holds the whole answer).
        data = encoder.start() + encoder.encode(first)
        if pending is None and translator.finished:
            yield LastChunk(data + encoder.done())
            return
        yield data
        if pending is not None:
            later = await pending
            if later is None:
                yield LastChunk(encoder.done())
                return
            yield encoder.encode(later)
        async for batch in batches:
            data = encoder.encode(batch)
            if encoder.ended:  # a failure's error line ends the stream
                yield LastChunk(data)
                return
            if translator.finished:
                yield LastChunk(data + encoder.done())
                return
            if data:
                yield data
        yield LastChunk(encoder.done())

    body = _paced(answer())

    async def close() -> None:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        await body.aclose()
        await batches.aclose()

    return EventStreamResponse(body, on_close=close, headers=headers)


def _paced(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A comment after every :data:`KEEPALIVE_SECONDS` of upstream silence (costs a task per chunk)."""
    return paced(chunks, lambda: CHAT_KEEPALIVE)


def _late(late: Late[Opened], chat: ModelRequest, record) -> Response:
    """The upstream has not answered within the head wait: a 200 now, comments until it does; a
    failure then is the stream's ``data:`` error line."""

    async def then(opened: Opened) -> AsyncIterator[bytes]:
        if getattr(opened.route.provider.adapter, "passthrough_format", None) == "chat":
            async for data in passthrough_chunks(opened.response, opened.clock, record=opened.record):
                yield data
            return
        encoder = ChunkEncoder(new_completion_id(), chat.model, chat.include_usage)
        batches = translated_batches(opened.response, opened.route.provider.adapter.new_translator(chat),
                                     opened.clock, record)
        async for data in encoded_frames(batches, encoder, encoder.done, head=encoder.start()):
            yield data

    return late_stream(late, start=CHAT_KEEPALIVE, keepalive=lambda: CHAT_KEEPALIVE,
                       fail=lambda error: b"data: " + error.to_json() + b"\n\n", then=then,
                       on_close=lambda opened: opened.response.aclose())
