"""``POST /v1/responses``: the Responses API for every provider subrelay routes to.

Same routing, fallbacks (before the first byte), limits and error shape as Chat Completions.
- A Codex model gets the client's body nearly as sent, and its events relayed with their own
  indices (:mod:`adapters.codex.passthrough`), the terminal event's ``output`` filled in.
- Any other provider goes through the hub: the request is decoded into the neutral model, the
  vendor's answer into neutral events, and those are encoded as a Responses stream
  (:mod:`proxy.doors.responses.stream`).
- ``previous_response_id`` is expanded from a bounded local record before routing, so a
  conversation can continue on any provider (a fallback may switch provider mid-way).
Errors before the stream starts are HTTP errors; after, a ``response.failed`` event. A stream's head
waits at most :data:`proxy.hub.keepalive.HEAD_SECONDS` for the upstream (Codex's timing contract).
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
from proxy.hub.encoded_stream import drain, encoded_frames, stream_encoded
from proxy.hub.event_stream import EventStreamResponse
from proxy.hub.events import AnswerEvent
from proxy.hub.json_response import json_response
from proxy.hub.request_body import client_body
from proxy.hub.keepalive import Late, head_within, late_stream, paced
from proxy.hub.model import Inbound, ModelRequest
from proxy.hub.sse import SSEDecoder, SSEEventTooLarge
from proxy.observe.metrics import RequestRecord
from proxy.hub.usage import usage_from_dict
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
    raw = await client_body(request)
    return await respond(request.app.state.subrelay, decode_json_object(raw), raw, request.scope.get("subrelay.record"))


async def respond(state: Any, body: dict[str, Any], raw: bytes, log_record: RequestRecord | None,
                  store: ResponseStore | None = None) -> Response:
    """One answer to a decoded Responses body: the HTTP door's, and each ``response.create`` on a
    WebSocket (:mod:`proxy.doors.responses.websocket`). ``store`` is where ``previous_response_id``
    is looked up and the answer kept (default: the app's record)."""
    store = state.responses if store is None else store  # (an empty store is falsy)
    body = expand_previous(body, store)
    model_request = parse_responses_request(body, raw)
    routes = state.router.candidates(model_request.model)
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    opening = open_with_fallbacks(state.upstream, state.cooldowns, routes, model_request, clock, log_record)
    record = _Recorder(store, model_request)
    if not model_request.stream:
        opened = await opening
    else:
        opened = await head_within(opening)
        if isinstance(opened, Late):
            return _late(opened, model_request, clock, record, log_record)
    headers = opened.client_headers()
    adapter = opened.route.provider.adapter
    if getattr(adapter, "passthrough_format", None) == "responses":
        return await _relay(opened, model_request, headers, record)
    batches = translated_batches(opened.response, adapter.new_translator(model_request), clock, log_record)
    if model_request.stream:
        return await _stream(model_request, batches, headers, record)
    return await _aggregate(model_request, batches, headers, record)


async def compact_response(request: Request) -> Response:
    """``POST /v1/responses/compact`` (the Codex CLI's remote compaction): relayed for Codex models,
    a clear 400 for any other."""
    state = request.app.state.subrelay
    raw = await client_body(request)
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
    answer = await read_whole(opened.response, clock, MAX_UPSTREAM_BODY, opened.record, content=False)
    return Response(answer, status_code=200, headers=opened.client_headers(), media_type="application/json")


class _Recorder:
    """Keeps each finished response's conversation for ``previous_response_id`` (unless store=false)."""

    def __init__(self, store: ResponseStore, request: ModelRequest) -> None:
        self.store = store
        # A WebSocket's own record keeps even store=false answers (Codex chains those on its socket).
        self.enabled = request.body.get("store") is not False or getattr(store, "keeps_unstored", False)
        self.input = input_items(request.body)

    def __call__(self, response: dict[str, Any] | None) -> None:
        if self.enabled and response is not None and isinstance(response.get("id"), str) and \
                response.get("status") in ("completed", "incomplete"):
            self.store.put(response["id"], self.input, [i for i in response.get("output") or () if isinstance(i, dict)])


# -- Codex: near pass-through ------------------------------------------------------------------------


async def _relay(opened: Opened, request: ModelRequest, headers: dict[str, str], record: _Recorder) -> Response:
    relay = ResponsesRelay(request.model)
    frames = _relayed_frames(opened, relay)
    if request.stream:
        body = _recorded(paced(frames, relay.keepalive), opened, relay, record)
        return EventStreamResponse(body, on_close=body.aclose, headers=headers,
                                   error_frame=lambda error: relay.error_frame(error))
    try:
        async for _ in frames:
            pass
    finally:
        await frames.aclose()
    if relay.failure is not None:
        raise relay.failure
    record(relay.final)
    _count(opened, relay.final)
    return json_response(relay.final, headers=headers)


def _count(opened: Opened, final: dict[str, Any] | None) -> None:
    """The relayed answer's usage (its terminal event's ``usage``, already parsed) on the request record."""
    if opened.record is not None and final is not None:
        opened.record.usage = usage_from_dict(final.get("usage")) or opened.record.usage


async def _recorded(frames: AsyncIterator[bytes], opened: Opened, relay: ResponsesRelay,
                    record: _Recorder) -> AsyncIterator[bytes]:
    try:
        async for data in frames:
            if data:
                yield data
        record(relay.final)
        _count(opened, relay.final)
    finally:
        await frames.aclose()


def _late(late: Late[Opened], request: ModelRequest, clock: StreamClock, record: _Recorder,
          log_record) -> Response:
    """The upstream has not answered within the head wait: a 200 now, with ``response.created``
    and ``response.in_progress`` keep-alives until it does; a failure then is ``response.failed``."""
    relay, encoder = ResponsesRelay(request.model), ResponsesEncoder(request)
    passthrough = {"on": False}

    def then(opened: Opened) -> AsyncIterator[bytes]:
        adapter = opened.route.provider.adapter
        if getattr(adapter, "passthrough_format", None) == "responses":
            passthrough["on"] = True
            return _recorded(_relayed_frames(opened, relay), opened, relay, record)
        batches = translated_batches(opened.response, adapter.new_translator(request), clock, log_record)
        return _encoded(batches, encoder, record)

    def keepalive() -> bytes:
        return relay.keepalive() if passthrough["on"] else encoder.keepalive()

    def fail(error: ProxyError) -> bytes:
        return relay.error_frame(error) if passthrough["on"] else encoder.fail(error)

    return late_stream(late, start=encoder.start(), keepalive=keepalive, fail=fail, then=then,
                       on_close=lambda opened: opened.response.aclose())


async def _encoded(batches: AsyncIterator[list[AnswerEvent]], encoder: ResponsesEncoder,
                   record: _Recorder) -> AsyncIterator[bytes]:
    """A translated answer after the head (and ``response.created``) went out already."""
    async for data in encoded_frames(batches, encoder, encoder.finish, after=lambda: record(encoder.final_response())):
        yield data


async def _relayed_frames(opened: Opened, relay: ResponsesRelay) -> AsyncIterator[bytes]:
    """The Codex events as the client gets them, bounded by the request's clock."""
    decoder = SSEDecoder()
    clock = opened.clock
    record = opened.record
    try:
        async for chunk in timed_chunks(opened.response.aiter_bytes(), clock):
            if record is not None:  # what was delivered, should the client leave before the usage
                record.relayed_frames += chunk.count(b"data:")
                record.relayed_bytes += len(chunk)
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
    return await stream_encoded(batches, encoder, headers, ping=encoder.keepalive,
                                on_complete=lambda: record(encoder.final_response()))
