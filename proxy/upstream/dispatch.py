"""Opening one upstream answer for a request: its route, then its fallbacks, under its deadlines.

Shared by every client-facing API. A request may be tried against several routes (its fallback
chain), but only *before* the first byte reaches the client: a 429, 5xx, timeout or connection
failure moves on to the next route. A route whose credential or model is cooling down (after a
Retry-After or a plan's usage limit) is skipped *only when a later route remains*: cooldowns
choose among targets, they never invent an error. The last route is always sent, so the client
sees the upstream's own answer (code, reset time, plan).
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from proxy.errors import (
    ProxyError,
    RateLimited,
    UpstreamFailure,
    UpstreamOverloaded,
    UpstreamTimeout,
)
from proxy.observe.metrics import (
    COOLDOWN_SKIPS,
    FALLBACKS,
    UPSTREAM_ERRORS,
    RequestRecord,
)
from proxy.observe.redact import get_logger
from proxy.state.cooldowns import Cooldowns
from proxy.upstream.client import StreamClock, UpstreamClient
from proxy.upstream.routing import Route, credential_identity

log = get_logger("subrelay.dispatch")

# Failures that mean "this target cannot answer now; another may".
FALLBACK_ERRORS = (RateLimited, UpstreamFailure, UpstreamOverloaded, UpstreamTimeout)
# Upstream quota headers worth showing the client (Codex's 5-hour/weekly windows, API rate limits).
QUOTA_HEADER_PREFIXES = ("x-codex-", "x-ratelimit-", "anthropic-ratelimit-")


class Admission(Protocol):
    """A policy the request must pass before any route is sent (team mode: :mod:`proxy.team.policy`)."""

    async def admit(self, routes: list[Route], request: Any, record: RequestRecord | None) -> list[Route]: ...

    async def opened(self, route: Route, headers: Any) -> None: ...


# Set by the edge for a team user's request; None otherwise (no policy, no cost).
ADMISSION: ContextVar[Admission | None] = ContextVar("subrelay_admission", default=None)


@dataclass(slots=True)
class Opened:
    """An upstream answer that has started (status < 400), ready to stream or read."""

    route: Route
    response: httpx.Response
    clock: StreamClock
    record: RequestRecord | None = None
    said: dict[str, str] | None = None  # what the admission tells the client (budget left, effort capped)

    def client_headers(self) -> dict[str, str]:
        """``x-subrelay-route`` plus the upstream's quota headers (and what the admission said)."""
        headers = {"x-subrelay-route": self.route.label}
        if self.said:
            headers.update(self.said)
        for name, value in self.response.headers.items():
            if name.lower().startswith(QUOTA_HEADER_PREFIXES):
                headers[name.lower()] = value
        return headers


async def open_with_fallbacks(
    upstream: UpstreamClient, cooldowns: Cooldowns, routes: list[Route], request: Any, clock: StreamClock,
    record: RequestRecord | None = None,
) -> Opened:
    """Try ``routes`` in order until one answers; raise the last failure when none does."""
    last_error: ProxyError | None = None
    admission = ADMISSION.get()
    trace = record.trace if record is not None else None  # None unless OTEL_* turned tracing on
    if admission is not None:
        try:
            if trace is None:
                routes = await admission.admit(routes, request, record)
            else:
                routes = await _traced_admission(admission, routes, request, record, trace)
        except ProxyError:
            if record is not None and routes:  # refused (a limit, the allow-list): usage names the model asked
                _routed(record, request, routes[0])
            raise
    if record is not None and routes:
        _routed(record, request, routes[0])
    for position, route in enumerate(routes):
        source = route.provider.credentials
        has_next = position + 1 < len(routes)
        if has_next:
            wait = cooldowns.remaining(route.provider.name, credential_identity(await source.current()),
                                       route.upstream_model)
            if wait:
                log.info("%s is cooling down for another %d s; trying %s first", route.label, int(wait + 0.999),
                         routes[position + 1].label)
                COOLDOWN_SKIPS.labels(route.provider.name).inc()
                if record is not None:
                    record.note(f"cooldown-skip {route.label}")
                if trace is not None:
                    now = time.perf_counter()
                    trace.mark("fallback", now, now, **{"subrelay.from": route.label,
                               "subrelay.to": routes[position + 1].label, "subrelay.reason": "cooling down"})
                continue
        tried = time.perf_counter() if trace is not None else 0.0
        try:
            async with asyncio.timeout_at(clock.started + clock.total):
                response = await upstream.open(route, request, _trace_headers(trace, route))
            if trace is not None:
                trace.mark("upstream connect", tried, time.perf_counter(), **{"subrelay.route": route.label,
                           "http.response.status_code": response.status_code})
            if record is not None and position:  # a fallback answered: the record names it instead
                _routed(record, request, route)
            if admission is not None:
                await admission.opened(route, response.headers)
                return Opened(route, response, clock, record, getattr(admission, "headers", None))
            return Opened(route, response, clock, record)
        except TimeoutError:
            last_error = clock.timeout_error()
        except FALLBACK_ERRORS as error:
            retry_after = getattr(error, "retry_after", None)
            identity = getattr(error, "credential_identity", None)
            if retry_after and identity:
                model = route.upstream_model if getattr(error, "per_model", True) else "*"
                cooldowns.note((route.provider.name, identity, model), retry_after)
            last_error = error
        except ProxyError as error:
            if trace is not None:
                trace.mark("upstream connect", tried, time.perf_counter(), **{"subrelay.route": route.label,
                           "http.response.status_code": error.status_code, "error.type": error.code or "error"})
            raise
        if trace is not None:
            now = time.perf_counter()
            trace.mark("upstream connect", tried, now, **{"subrelay.route": route.label,
                       "http.response.status_code": last_error.status_code,
                       "error.type": last_error.code or type(last_error).__name__})
            if has_next:
                trace.mark("fallback", now, now, **{"subrelay.from": route.label, "subrelay.to": routes[position + 1].label,
                           "subrelay.reason": f"{last_error.status_code} {last_error.code or type(last_error).__name__}"})
        UPSTREAM_ERRORS.labels(route.provider.name, last_error.code or type(last_error).__name__).inc()
        if has_next:
            log.warning("%s failed before answering (%s); falling back to %s",
                        route.label, last_error.status_code, routes[position + 1].label)
            FALLBACKS.labels(route.provider.name, routes[position + 1].provider.name).inc()
            if record is not None:
                record.note(f"fallback {route.label} ({last_error.status_code}) -> {routes[position + 1].label}")
    if last_error is None:  # unreachable: the last route is never skipped
        raise UpstreamFailure("No route could be tried.")
    raise last_error


async def _traced_admission(admission: Admission, routes: list[Route], request: Any, record: RequestRecord,
                            trace: Any) -> list[Route]:
    """The admission, as the trace's ``admission`` span (with the refusal's code when it refuses)."""
    started, refusal = time.perf_counter(), None
    try:
        return await admission.admit(routes, request, record)
    except ProxyError as error:
        refusal = error.code or "refused"
        raise
    finally:
        trace.mark("admission", started, time.perf_counter(), **({"error.type": refusal} if refusal else {}))


def _trace_headers(trace: Any, route: Route) -> dict[str, str] | None:
    """The W3C ``traceparent`` for upstreams that join traces (OpenAI-compatible servers); else None."""
    if trace is None or not getattr(route.provider.adapter, "accepts_traceparent", False):
        return None
    return trace.traceparent()


def _routed(record: RequestRecord, request: Any, route: Route) -> None:
    known = any(info.id == route.upstream_model for info in route.provider.adapter.models())  # a label only if listed
    record.routed(getattr(request, "model", "-"), route.label, route.provider.name, known, route.upstream_model)
