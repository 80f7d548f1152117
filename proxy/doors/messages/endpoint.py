"""``POST /v1/messages`` (and ``/v1/messages/count_tokens``): the Anthropic Messages API for every
provider subrelay routes to, so Claude Code and the Anthropic SDKs can use any model it reaches.

- Claude models with an Anthropic key: pass-through. The client's body goes upstream as sent (the
  client's proxy key never does; the configured key does), ``anthropic-version``/``anthropic-beta``
  are kept, and the answer's bytes are relayed.
- Codex and OpenAI-compatible providers: through the hub (:mod:`proxy.doors.messages.request` in,
  :mod:`proxy.doors.messages.stream` out), with ``ping`` events while the upstream is silent.
Errors use Anthropic's shape (``{"type": "error", "error": {"type", "message"}}``) before the stream
starts, and an ``error`` event after.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from proxy.doors.messages.request import parse_messages_request
from proxy.doors.messages.stream import PING, MessagesEncoder, asked_for_thinking, error_event
from proxy.doors.messages.token_count import count_input_tokens
from proxy.errors import AuthenticationFailed, ModelNotFound, NotFound, ProxyError
from proxy.hub.checks import decode_json_object, required_model
from proxy.hub.encoded_stream import drain, encoded_frames, stream_encoded
from proxy.hub.event_stream import EventStreamResponse
from proxy.hub.events import AnswerEvent
from proxy.hub.json_response import json_response
from proxy.hub.request_body import client_body
from proxy.hub.keepalive import Late, head_within, late_stream
from proxy.hub.model import Inbound, ModelRequest
from proxy.invocation import command
from proxy.upstream.client import (
    MAX_UPSTREAM_BODY,
    StreamClock,
    passthrough_chunks,
    read_whole,
    translated_batches,
)
from proxy.upstream.dispatch import Opened, open_with_fallbacks
from proxy.upstream.routing import Route

PING_SECONDS = 10.0  # how long an upstream may be silent before the client gets a ping
_CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")
_VARIANT = re.compile(r"\[[^\]]*\]$")  # Claude Code's context-size marker, e.g. "claude-opus-4-8[1m]"


async def create_message(request: Request) -> Response:
    state = request.app.state.subrelay
    raw = await client_body(request)
    body = decode_json_object(raw)
    model_request = parse_messages_request(body, raw)
    model_request.inbound.headers = _client_headers(request)
    routes = candidates(state.router, model_request.model)
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    opening = open_with_fallbacks(state.upstream, state.cooldowns, routes, model_request, clock, request.scope.get("subrelay.record"))
    if not model_request.stream:
        opened = await opening
    else:
        opened = await head_within(opening)
        if isinstance(opened, Late):
            return _late(opened, model_request, request.scope.get("subrelay.record"))
    headers = opened.client_headers()
    if getattr(opened.route.provider.adapter, "passthrough_format", None) == "messages":
        return await _relay(opened, model_request, headers)
    batches = translated_batches(opened.response, opened.route.provider.adapter.new_translator(model_request), clock, request.scope.get("subrelay.record"))
    if model_request.stream:
        return await _stream(model_request, batches, headers)
    return await _aggregate(model_request, batches, headers)


async def count_tokens(request: Request) -> Response:
    """Counted by Anthropic for its own models, estimated locally (fast) for every other provider."""
    state = request.app.state.subrelay
    raw = await client_body(request)
    body = decode_json_object(raw)
    model = required_model(body)
    routes = candidates(state.router, model)
    if getattr(routes[0].provider.adapter, "passthrough_format", None) == "messages":
        counting = ModelRequest(model=model, inbound=Inbound("messages.count_tokens", body, raw,
                                                             headers=_client_headers(request)))
        limits = state.settings.limits
        clock = StreamClock(limits.request_seconds, limits.stall_seconds)
        opened = await open_with_fallbacks(state.upstream, state.cooldowns, routes[:1], counting, clock, request.scope.get("subrelay.record"))
        answer = await read_whole(opened.response, clock, MAX_UPSTREAM_BODY, content=False)
        return Response(answer, media_type="application/json", headers=opened.client_headers())
    return json_response({"input_tokens": count_input_tokens(body)})


def candidates(router, model: str) -> list[Route]:
    """Routes for a Messages model name, with a way out when Claude Code asks for a Claude model
    nothing here serves."""
    try:
        return router.candidates(model)
    except (ModelNotFound, AuthenticationFailed) as exc:
        base = _VARIANT.sub("", model)
        if base != model:
            with contextlib.suppress(ModelNotFound, AuthenticationFailed):
                return router.candidates(base)
        if not model.startswith("claude"):
            raise
        codex = router.providers.get("codex")
        logged_in = codex is not None and codex.problem() is None
        plan = ("To use your ChatGPT plan in Claude Code, set" if logged_in else
                f"To use a ChatGPT plan in Claude Code, log in (`{command('login')}`), then set")
        raise NotFound(
            f"No provider here serves '{model}': {exc.message.rstrip('.')}. {plan} "
            "ANTHROPIC_MODEL=gpt-5.5 and ANTHROPIC_SMALL_FAST_MODEL=gpt-5.4-mini (or ANTHROPIC_DEFAULT_OPUS_MODEL, "
            "_SONNET_MODEL and _HAIKU_MODEL), or map Claude names to models in subrelay.toml [aliases]; to use "
            "Claude itself, set ANTHROPIC_API_KEY for subrelay.", param="model", code="model_not_found") from None


def _client_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in _CLIENT_HEADERS if name in request.headers}


async def _relay(opened: Opened, request: ModelRequest, headers: dict[str, str]) -> Response:
    """Anthropic answers in the client's own format: its bytes go through unchanged."""
    if request.stream:
        return EventStreamResponse(passthrough_chunks(opened.response, opened.clock, error_frame=error_event,
                                                      record=opened.record),
                                   on_close=opened.response.aclose, headers=headers, error_frame=error_event)
    answer = await read_whole(opened.response, opened.clock, MAX_UPSTREAM_BODY, opened.record)
    return Response(answer, status_code=200, headers=headers, media_type="application/json")


async def _aggregate(request: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str]) -> Response:
    encoder = MessagesEncoder(request.model, emit=False, thinking=asked_for_thinking(request))
    await drain(batches, encoder.encode)
    if encoder.failure is not None:
        raise encoder.failure
    encoder.finish()
    return json_response(encoder.message(), headers=headers)


async def _stream(request: ModelRequest, batches: AsyncIterator[list[AnswerEvent]], headers: dict[str, str]) -> Response:
    return await stream_encoded(batches, MessagesEncoder(request.model, thinking=asked_for_thinking(request)), headers,
                                ping=PING, ping_seconds=PING_SECONDS)


def _late(late: Late[Opened], request: ModelRequest, record) -> Response:
    """The upstream has not answered within the head wait: a 200 now, ``ping`` events until it
    does (the Anthropic SDKs skip them anywhere); a failure then is an ``error`` event."""

    async def then(opened: Opened) -> AsyncIterator[bytes]:
        if getattr(opened.route.provider.adapter, "passthrough_format", None) == "messages":
            async for data in passthrough_chunks(opened.response, opened.clock, error_frame=error_event,
                                                 record=opened.record):
                yield data
            return
        encoder = MessagesEncoder(request.model, thinking=asked_for_thinking(request))
        batches = translated_batches(opened.response, opened.route.provider.adapter.new_translator(request),
                                     opened.clock, record)
        async for data in encoded_frames(batches, encoder, encoder.finish, head=encoder.start()):
            yield data

    return late_stream(late, start=PING, keepalive=lambda: PING, fail=error_event, then=then,
                       on_close=lambda opened: opened.response.aclose())


__all__ = ["create_message", "count_tokens", "ProxyError"]
