"""``POST /v1/responses``: the Responses API for every provider subrelay routes to.

Same routing, fallbacks (before the first byte), limits and error shape as Chat Completions.
- A Codex model gets the client's body nearly as sent, and its events relayed with their own
  indices (:mod:`adapters.codex.passthrough`), the terminal event's ``output`` filled in.
- Any other provider goes through the hub: the request is decoded into the neutral model, the
  vendor's answer into neutral events, and those are encoded as a Responses stream
  (:mod:`proxy.doors.responses.stream`).
- ``previous_response_id`` is expanded from a bounded local record before routing, so a
  conversation can continue on any provider (a fallback may switch provider mid-way).
Errors before the stream starts are HTTP errors; after, a ``response.failed`` or ``error`` event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from adapters.codex.passthrough import ResponsesRelay
from proxy.doors.responses.request import input_items, parse_responses_request
from proxy.doors.responses.store import expand_previous
from proxy.doors.responses.stream import ResponsesEncoder
from proxy.errors import BadRequest, ProxyError, UpstreamFailure, UpstreamTimeout
from proxy.hub.checks import decode_json_object, required_model
from proxy.hub.encoded_stream import drain, stream_encoded
from proxy.hub.event_stream import EventStreamResponse
from proxy.hub.events import AnswerEvent
from proxy.hub.json_response import json_response
from proxy.hub.model import Inbound, ModelRequest
from proxy.hub.sse import SSEDecoder, SSEEventTooLarge
from proxy.state.responses import ResponseStore
from proxy.upstream.client import (
    MAX_UPSTREAM_BODY,
    StreamClock,
    read_whole,
    timed_chunks,
    translated_batches,
)
from proxy.upstream.dispatch import Opened, open_with_fallbacks


async def create_response(request: Request) -> Response:
    state = request.app.state.subrelay
    raw = await request.body()
    body = expand_previous(decode_json_object(raw), state.responses)
    model_request = parse_responses_request(body, raw)
    routes = state.router.candidates(model_request.model)
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    opened = await open_with_fallbacks(state.upstream, state.cooldowns, routes, model_request, clock, request.scope.get("subrelay.record"))
    record = _Recorder(state.responses, model_request)
    headers = opened.client_headers()
    adapter = opened.route.provider.adapter
    if getattr(adapter, "passthrough_format", None) == "responses":
        return await _relay(opened, model_request, headers, record)
    batches = translated_batches(opened.response, adapter.new_translator(model_request), clock, request.scope.get("subrelay.record"))
    if model_request.stream:
        return await _stream(model_request, batches, headers, record)
    return await _aggregate(model_request, batches, headers, record)


async def compact_response(request: Request) -> Response:
    """``POST /v1/responses/compact`` (the Codex CLI's remote compaction): relayed for Codex models,
    a clear 400 for any other."""
    state = request.app.state.subrelay
    raw = await request.body()
    body = decode_json_object(raw)
    model = required_model(body)
    routes = [route for route in state.router.candidates(model)
              if getattr(route.provider.adapter, "passthrough_format", None) == "responses"]
    if not routes:
        raise BadRequest(f"Remote compaction (/v1/responses/compact) is only available for Codex models; "
                         f"'{model}' is not one.", param="model", code="unsupported_model")
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    compaction = ModelRequest(model=model, inbound=Inbound("responses.compact", body, raw))
    opened = await open_with_fallbacks(state.upstream, state.cooldowns, routes, compaction, clock, request.scope.get("subrelay.record"))
    answer = await read_whole(opened.response, clock, MAX_UPSTREAM_BODY)
    return Response(answer, status_code=200, headers=opened.client_headers(), media_type="application/json")


class _Recorder:
    """Keeps each finished response's conversation for ``previous_response_id`` (unless store=false)."""

    def __init__(self, store: ResponseStore, request: ModelRequest) -> None:
        self.store = store
        self.enabled = request.body.get("store") is not False
        self.input = input_items(request.body)

    def __call__(self, response: dict[str, Any] | None) -> None:
        if self.enabled and response is not None and isinstance(response.get("id"), str) and \
                response.get("status") in ("completed", "incomplete"):
            self.store.put(response["id"], self.input, [i for i in response.get("output") or () if isinstance(i, dict)])


# -- Codex: near pass-through ------------------------------------------------------------------------


async def _relay(opened: Opened, request: ModelRequest, headers: dict[str, str], record: _Recorder) -> Response:
    relay = ResponsesRelay()
    frames = _relayed_frames(opened, relay)
    if request.stream:
        async def body() -> AsyncIterator[bytes]:
            async for data in frames:
                if data:
                    yield data
            record(relay.final)

        return EventStreamResponse(body(), on_close=frames.aclose, headers=headers,
                                   error_frame=lambda error: relay.error_frame(error))
    try:
        async for _ in frames:
            pass
    finally:
        await frames.aclose()
    if relay.failure is not None:
        raise relay.failure
    record(relay.final)
    return json_response(relay.final, headers=headers)


async def _relayed_frames(opened: Opened, relay: ResponsesRelay) -> AsyncIterator[bytes]:
    """The Codex events as the client gets them, bounded by the request's clock."""
    decoder = SSEDecoder()
    clock = opened.clock
    try:
        async for chunk in timed_chunks(opened.response.aiter_bytes(), clock):
            out = []
            for event in decoder.feed(chunk):
                out.append(relay.feed(event))
            if out:
                clock.progressed()
                yield b"".join(out)
            if relay.finished:
                return
        for event in decoder.flush():
            yield relay.feed(event)
        yield relay.close()
    except ProxyError as exc:
        yield _fail(relay, exc)
    except SSEEventTooLarge as exc:
        yield _fail(relay, UpstreamFailure(f"The upstream stream is malformed: {exc}.", code="upstream_event_too_large"))
    except httpx.TimeoutException:
        yield _fail(relay, UpstreamTimeout("The upstream stopped sending before the response was complete."))
    except httpx.HTTPError as exc:
        yield _fail(relay, UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__})."))
    finally:
        await opened.response.aclose()


def _fail(relay: ResponsesRelay, error: ProxyError) -> bytes:
    relay.finished = True
    relay.failure = error
    return relay.error_frame(error)


# -- other providers: through the hub ----------------------------------------------------------------


async def _aggregate(request: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str],
                     record: _Recorder) -> Response:
    encoder = ResponsesEncoder(request, emit=False)
    await drain(batches, encoder.encode)
    if encoder.failure is not None:
        raise encoder.failure
    encoder.finish()
    final = encoder.final_response()
    record(final)
    return json_response(final, headers=headers)


async def _stream(request: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str],
                  record: _Recorder) -> Response:
    encoder = ResponsesEncoder(request)
    return await stream_encoded(batches, encoder, headers, on_complete=lambda: record(encoder.final_response()))
