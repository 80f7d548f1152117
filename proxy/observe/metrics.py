"""What an operator sees of each request: one log line, and Prometheus metrics.

The edge opens a :class:`RequestRecord` per request (its id is the client's ``x-request-id`` when that
is a sane token, else a fresh one, and goes back in the response); handlers fill in the model, the
route, fallbacks and token usage; when the response ends the record becomes one info log line (text,
or JSON with ``--log-format json``) and metric updates. No body, no header value and no secret ever
goes into either: labels are endpoints, provider names, status codes and model names the router
knows (anything else is ``other``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from proxy.observe.cost import cost_of
from proxy.observe.redact import escape_controls, get_logger, redact

if TYPE_CHECKING:  # a type only: observe imports nothing else of the proxy
    from proxy.hub.events import Usage

log = get_logger("subrelay.requests")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ENDPOINTS = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "responses",
             "/responses": "responses", "/v1/responses/compact": "compact", "/v1/messages": "messages",
             "/v1/messages/count_tokens": "count_tokens", "/v1/models": "models",
             "/backend-api/codex/responses": "responses", "/backend-api/codex/responses/compact": "compact",
             "/backend-api/codex/models": "models", "/v1/embeddings": "embeddings", "/v1/moderations": "moderations",
             "/v1/audio/transcriptions": "transcriptions", "/v1/images/generations": "images"}

# -- metrics ------------------------------------------------------------------------------------------

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUESTS = Counter("subrelay_requests_total", "Requests answered", ["endpoint", "provider", "model", "status"])
LATENCY = Histogram("subrelay_request_seconds", "Time to the last byte", ["endpoint"], buckets=_BUCKETS)
TTFB = Histogram("subrelay_ttfb_seconds", "Time to the first response byte", ["endpoint"], buckets=_BUCKETS)
UPSTREAM_ERRORS = Counter("subrelay_upstream_errors_total", "Upstream failures", ["provider", "kind"])
FALLBACKS = Counter("subrelay_fallbacks_total", "Fallbacks taken", ["from_provider", "to_provider"])
COOLDOWN_SKIPS = Counter("subrelay_cooldown_skips_total", "Targets skipped while cooling down", ["provider"])
COOLDOWNS = Gauge("subrelay_cooldowns_active", "Cooldowns in force", multiprocess_mode="livesum")
REFRESHES = Counter("subrelay_credential_refreshes_total", "Login refreshes", ["result"])
OPEN_STREAMS = Gauge("subrelay_open_streams", "Streams being sent", multiprocess_mode="livesum")
TOKENS = Counter("subrelay_tokens_total", "Tokens the upstreams reported", ["provider", "model", "kind"])
TRACE_SPANS_DROPPED = Counter("subrelay_trace_spans_dropped_total", "Trace spans not sent (OpenTelemetry)", ["reason"])


_children: dict[tuple, object] = {}  # label values → metric child (labels() is the slow part of an update)


def _child(metric, *values: str):
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


_adders: dict[tuple, Callable[[float], None]] = {}  # label values → the child's add (see _adder)


def _adder(metric, *values: str) -> Callable[[float], None]:
    """A function that counts (Counter) or observes (Histogram) one value for these labels.

    The request path updates five to seven series per request; through prometheus_client's public
    methods each update re-checks the metric and walks the histogram's buckets in Python (about 3% of
    a request's instructions, issue 21). This goes to the child's value objects (the same ones the
    exposition reads, in one process or through the multiprocess files), and falls back to the public
    methods if a prometheus_client release ever names them differently."""
    key = (metric, *values)
    add = _adders.get(key)
    if add is None:
        child = _child(metric, *values)
        value = getattr(child, "_value", None)
        bounds, buckets, total = (getattr(child, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
        if isinstance(metric, Counter) and hasattr(value, "inc"):
            add = _unlocked(value) or value.inc
        elif isinstance(metric, Histogram) and bounds and buckets and hasattr(total, "inc"):
            incs = tuple(_unlocked(b) or b.inc for b in buckets)

            def add(amount: float, bounds=tuple(bounds), incs=incs, total=_unlocked(total) or total.inc) -> None:
                total(amount)
                incs[bisect_left(bounds, amount)](1)  # the first bound >= amount; the last bound is +Inf
        else:
            add = child.observe if isinstance(metric, Histogram) else child.inc
        _adders[key] = add
    return add


def _unlocked(value) -> Callable[[float], None] | None:
    """An add without the value's mutex, for a one-process value (``MutexValue``) that only the event loop's
    thread updates (the request path): a lock taken and released per update was a tenth of the metrics' cost.
    Reading it from another thread still sees a whole float. None for any other kind (multiprocess files)."""
    if type(value).__name__ != "MutexValue" or not hasattr(value, "_value"):
        return None

    def add(amount: float, value=value) -> None:
        value._value += amount
    return add


def metrics_text(multiprocess_dir: str | None) -> bytes:
    """The exposition text; with several workers, the merged view of all of them."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
        return generate_latest(registry)
    return generate_latest()


# -- one record per request ---------------------------------------------------------------------------


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    first_byte: float | None = None
    status: int = 0
    model: str = "-"
    route: str = "-"
    provider: str = "-"
    known_model: bool = False
    usage: Usage | None = None  # what the upstream reported, on every path (relayed bytes included)
    # What an answer stream relayed so far (upstream data frames and bytes): a stream the client left
    # before its usage arrived is charged for what it delivered (proxy.team.policy), never less.
    relayed_frames: int = 0
    relayed_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    upstream_model: str = "-"  # the model the route sent (the requested one may be an alias)
    person: str = "-"  # who asked: a user's name or an owner key's id (proxy.hub.caller.Caller.person), never a key
    error: str | None = None  # the error code the client got, if any
    ended: float | None = None
    trace: Any = None  # the request's span and marks when tracing is on (proxy.observe.tracing); else None

    @classmethod
    def start(cls, scope, incoming_id: bytes | None) -> "RequestRecord":
        candidate = incoming_id.decode("latin-1") if incoming_id else ""
        request_id = candidate if candidate and _REQUEST_ID.fullmatch(candidate) else os.urandom(16).hex()
        return cls(request_id, scope["method"], scope["path"])

    def routed(self, model: str, route_label: str, provider: str, known: bool, upstream_model: str = "-") -> None:
        self.model, self.route, self.provider, self.known_model = model, route_label, provider, known
        self.upstream_model = upstream_model

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self) -> None:
        """Write the log line and count the request (called once, when the response ended)."""
        now = self.ended = time.perf_counter()
        latency = now - self.started
        ttfb = (self.first_byte or now) - self.started
        endpoint = ENDPOINTS.get(self.path, "other")
        if log.isEnabledFor(logging.INFO):  # the line is built only when someone will read it
            fields = {"request_id": self.request_id, "method": self.method, "endpoint": self.path,
                      "person": self.person, "model": self.model, "route": self.route, "status": self.status,
                      "latency_ms": round(latency * 1000, 2), "ttfb_ms": round(ttfb * 1000, 2)}
            if self.usage is not None:
                fields.update(tokens_in=self.usage.prompt_tokens, tokens_out=self.usage.completion_tokens,
                              tokens_cached=self.usage.cached_tokens or 0,
                              tokens_reasoning=self.usage.reasoning_tokens or 0)
            cost = cost_of(self.provider, self.upstream_model, self.usage)
            fields["cost"] = "-" if cost is None else cost
            if self.notes:
                fields["notes"] = "; ".join(self.notes)
            log.info("request %s", _text(fields), extra={"fields": fields})
        if endpoint != "other" or self.path.startswith("/v1/"):
            model = self.model if self.known_model else "other"
            _adder(REQUESTS, endpoint, self.provider, model, str(self.status))(1)
            _adder(LATENCY, endpoint)(latency)
            _adder(TTFB, endpoint)(ttfb)
            if self.usage is not None:
                for kind, value in (("input", self.usage.prompt_tokens), ("output", self.usage.completion_tokens),
                                    ("cached", self.usage.cached_tokens or 0),
                                    ("reasoning", self.usage.reasoning_tokens or 0)):
                    if value:
                        _adder(TOKENS, self.provider, model, kind)(value)


def _text(fields: dict) -> str:
    return " ".join(f"{key}={_quote(value)}" for key, value in fields.items())


def _quote(value: object) -> str:
    text = escape_controls(str(value))
    return orjson.dumps(text).decode() if (" " in text or '"' in text or not text) else text


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line; a request line carries its fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                 "logger": record.name, "message": redact(record.getMessage())}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()
