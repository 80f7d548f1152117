"""The plain endpoints' handlers: validate, route to a provider that has the endpoint, open (with
fallbacks and team mode's admission), read the whole answer (bounded in size and time), relay it.

A model on a ChatGPT plan (the Codex backend) or on a vendor without the endpoint answers a 400 that
says so and names the providers here that have it; an unknown model the router's usual 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.doors.plain.request import (
    parse_embeddings,
    parse_image_generation,
    parse_moderations,
    parse_transcription,
)
from proxy.errors import BadRequest
from proxy.hub.events import Usage
from proxy.hub.plain import PlainRequest
from proxy.hub.request_body import client_body
from proxy.hub.usage import usage_at_end
from proxy.upstream.client import MAX_UPSTREAM_BODY, StreamClock, read_whole
from proxy.upstream.dispatch import open_with_fallbacks
from proxy.upstream.routing import Route, Router

# The answer's media types relayed as the upstream said them (a transcription as text, SRT or WebVTT).
_MEDIA_TYPES = frozenset({"application/json", "text/plain", "text/vtt", "text/srt", "application/x-subrip"})
# A model to suggest for each endpoint, when the one asked for cannot serve it.
_EXAMPLES = {"embeddings": "openai/text-embedding-3-small", "moderations": "openai/omni-moderation-latest",
             "audio.transcriptions": "openai/whisper-1", "images.generations": "openai/gpt-image-1"}


async def create_embedding(request: Request) -> Response:
    return await _relay(request, parse_embeddings(await client_body(request)))


async def create_moderation(request: Request) -> Response:
    return await _relay(request, parse_moderations(await client_body(request)))


async def create_image(request: Request) -> Response:
    return await _relay(request, parse_image_generation(await client_body(request)))


async def create_transcription(request: Request) -> Response:
    raw = await client_body(request)
    return await _relay(request, parse_transcription(raw, request.headers.get("content-type", "")))


async def _relay(request: Request, plain: PlainRequest) -> Response:
    state = request.app.state.subrelay
    record = request.scope.get("subrelay.record")
    routes = serving_routes(state.router, plain)
    limits = state.settings.limits
    clock = StreamClock(limits.request_seconds, limits.stall_seconds)
    opened = await open_with_fallbacks(state.upstream, state.cooldowns, routes, plain, clock, record)
    body = await read_whole(opened.response, clock, MAX_UPSTREAM_BODY)
    if record is not None:
        record.usage = usage_at_end(body)
        if record.usage is None:  # whisper-1, dall-e: no usage in the answer; the limits keep the estimate
            estimate = plain.token_estimate
            record.usage = Usage(estimate[0], estimate[1], sum(estimate))
            record.note("usage estimated: the upstream reported none")
    media = opened.response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return Response(body, status_code=200, headers=opened.client_headers(),
                    media_type=media if media in _MEDIA_TYPES else "application/json")


def serving_routes(router: Router, plain: PlainRequest) -> list[Route]:
    """The model's routes whose provider has this endpoint; a 400 when its first route's has not (a
    fallback without it is dropped)."""
    routes = router.candidates(plain.model)  # an unknown model: the usual 404
    first = routes[0]
    if plain.endpoint not in _endpoints(first):
        raise BadRequest(_no_endpoint(router, plain, first), param="model", code="unsupported_endpoint")
    return [route for route in routes if plain.endpoint in _endpoints(route)]


def _endpoints(route: Route) -> frozenset[str]:
    return getattr(route.provider.adapter, "endpoints", frozenset())


def _no_endpoint(router: Router, plain: PlainRequest, route: Route) -> str:
    path = "/v1" + plain.path
    provider = route.provider
    if provider.kind == "codex":
        why = (f"The model '{plain.model}' is served by {provider.name}, a ChatGPT plan (the Codex backend), which "
               f"has no {path} endpoint: a plan serves its chat models only.")
    else:
        why = f"The model '{plain.model}' is served by {provider.name}, which has no {path} endpoint."
    having = [p.name for p in router.providers.values() if plain.endpoint in getattr(p.adapter, "endpoints", ())]
    if having:
        example = _EXAMPLES[plain.endpoint] if "openai" in having else f"{having[0]}/<model>"
        return f"{why} Providers here that have it: {', '.join(having)}; name one of their models, e.g. {example}."
    return (f"{why} No provider configured here has it: add an API key for one that does (OPENAI_API_KEY for "
            f"{_EXAMPLES[plain.endpoint]}; docs/endpoints.md lists the others).")
