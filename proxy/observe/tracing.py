"""OpenTelemetry traces of model requests: an optional observer beside the metrics, off (and free) by default.

On when the standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (or ``OTEL_TRACES_EXPORTER=otlp``), unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Headers, timeout, gzip, TLS files, the sampler,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and the batch processor's ``OTEL_BSP_*`` are read the
standard way (proxy.observe.otel_env). Export is OTLP over HTTP/protobuf in batches from one thread, never on
the request path (proxy.observe.otlp_export).

One trace per model request, with the GenAI semantic conventions on the request's SERVER span
(``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``error.type``) and child spans for what it waited on:
``admission`` (the team policy: limits, allow-list, the quota-aware switch), ``upstream connect`` (each try
of a route, up to its response headers; a CLIENT span), ``fallback`` (moving to the next route, with the
reason), ``first byte`` (headers to the first byte the client got) and ``stream`` (the rest of the answer).
The request's span continues the client's W3C ``traceparent`` (and ``tracestate``); OpenAI-compatible
upstreams (vLLM, LiteLLM, Ollama… all propagate W3C context) get ours, so their spans join the same trace.

Why not the OpenTelemetry SDK (it was used until issue 33): its per-span objects, locks and attribute
cleaning, then protobuf objects per span, took a traced request from 0.81 M to 2.36 M instructions. The request
path now keeps plain values (two random ids, the marks as tuples) and the export thread writes the OTLP bytes
directly (proxy.observe.otlp), checked field by field against the official protobuf classes in the tests.

Off, the request path pays one ``is None`` test per step: the edge sets no trace on the record, and every
mark is behind ``record.trace is not None``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from random import getrandbits, randbytes
from typing import Any

from proxy.observe import otlp
from proxy.observe.otel_env import OtelSettings, endpoint_parts, settings_from_env, wanted
from proxy.observe.otlp_export import Batcher, Sender
from proxy.observe.redact import get_logger

__all__ = ["Trace", "Tracing", "wanted"]
log = get_logger("subrelay.tracing")
_OPERATIONS = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "chat",
               "/responses": "chat", "/v1/responses/compact": "chat", "/v1/messages": "chat"}
_LOW64 = (1 << 64) - 1
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_KEY = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_MEMBER = re.compile(rf"({_KEY})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{{0,255}}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


_shapes: dict[tuple, tuple[bytes, ...] | bytes] = {}  # a span's parts that repeat, by what decides them


def _kept(key: tuple, value):
    if len(_shapes) > 4096:  # bounded: a store of 10,000 people must not grow it for ever
        _shapes.clear()
    _shapes[key] = value
    return value


_TIMES = otlp.TIMES
_ZERO_ID = bytes(8)
_REQUEST_ID = otlp.field(b"\x0a", b"subrelay.request_id") + b"\x12"  # KeyValue.key, then its value's tag
_ID_AND_TIMES = 2 + 16 + 2 + 8 + 18  # a span's trace id and span id fields, and its two times


def _child_shape(name: str, kind: int, attributes: bytes, failed: str | None, tail: int) -> tuple[bytes, bytes, bytes]:
    """(the span's tag and length, name and kind, attributes + status + flags) of a child span whose ids
    and times take ``_ID_AND_TIMES`` bytes and whose trace state and parent id take ``tail``."""
    named = otlp.name_and_kind(name, kind)
    rest = attributes + otlp.status(failed) + otlp.flags(False)
    length = _ID_AND_TIMES + tail + len(named) + len(rest)
    return b"\x12" + otlp.varint(length), named, rest


def _mark_shape(key: tuple) -> tuple[bytes, bytes, bytes, bool]:
    """A mark's span parts (:func:`_child_shape`) and whether it is a connect that answered."""
    name, items, tail = key
    failed = dict(items).get("error.type")
    attributes = b"".join(otlp.attribute(k, v) for k, v in items if v is not None)
    shape = _child_shape(name, otlp.CLIENT if name == "upstream connect" else otlp.INTERNAL, attributes,
                         str(failed) if failed else None, tail)
    return _kept(key, (*shape, name == "upstream connect" and not failed))


_FIRST_BYTE: dict[int, tuple] = {}  # the trace state's length → the first byte and stream spans' parts


def _fixed_shapes(tail: int) -> tuple:
    shapes = (_child_shape("first byte", otlp.INTERNAL, b"", None, tail),
              _child_shape("stream", otlp.INTERNAL, b"", None, tail))
    if len(_FIRST_BYTE) > 64:
        _FIRST_BYTE.clear()
    _FIRST_BYTE[tail] = shapes
    return shapes


def _root_shape(key: tuple) -> tuple[bytes, bytes, bytes, int]:
    """(name and kind, the GenAI attributes, status + flags, the length of all that with ids and times) of
    the request's span."""
    path, model, upstream_model, provider, route, status, person, error, notes, remote = key
    operation = _OPERATIONS.get(path, "chat")
    attributes = [("gen_ai.operation.name", operation), ("http.response.status_code", status),
                  ("subrelay.person", person)]
    if model not in ("-", ""):
        attributes.append(("gen_ai.request.model", model))
    if upstream_model not in ("-", ""):
        attributes.append(("gen_ai.response.model", upstream_model))
    if provider not in ("-", ""):
        attributes += (("gen_ai.provider.name", provider), ("subrelay.route", route))
    if notes:
        attributes.append(("subrelay.decision", "; ".join(notes)))
    failure = None
    if status >= 400 or status == 0:
        attributes.append(("error.type", error or str(status or "cancelled")))
        failure = error or ""
    named = otlp.name_and_kind(f"{operation} {model}" if model not in ("-", "") else operation, otlp.SERVER)
    encoded = b"".join(otlp.attribute(k, v) for k, v in attributes)
    rest = otlp.status(failure) + otlp.flags(remote)
    return _kept(key, (named, encoded, rest, _ID_AND_TIMES + len(named) + len(encoded) + len(rest)))


def _usage_shape(tokens: tuple[int, int]) -> bytes:
    return _kept(tokens, otlp.attribute("gen_ai.usage.input_tokens", tokens[0])
                 + otlp.attribute("gen_ai.usage.output_tokens", tokens[1]))


class Trace:
    """One request's trace on the request path: its ids and the marks, plain values only."""

    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "state", "marks")

    def __init__(self, trace_id: int, span_id: int, parent_id: int | None, sampled: bool, state: str) -> None:
        self.trace_id, self.span_id, self.parent_id, self.sampled, self.state = trace_id, span_id, parent_id, \
            sampled, state
        self.marks: list[tuple[str, float, float, dict]] = []

    def mark(self, name: str, start: float, end: float, **attributes: Any) -> None:
        """A child span (``admission``, ``upstream connect``, ``fallback``) from perf_counter times."""
        self.marks.append((name, start, end, attributes))

    def traceparent(self) -> dict[str, str]:
        """The W3C headers for an upstream call made inside this request's span."""
        headers = {"traceparent": f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"}
        if self.state:
            headers["tracestate"] = self.state
        return headers


def parse_traceparent(raw: bytes) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a valid W3C ``traceparent``, else None (a new trace starts)."""
    if len(raw) > 512:
        return None
    match = _TRACEPARENT.fullmatch(raw.decode("latin-1").strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace, span = int(trace_id, 16), int(span_id, 16)
    if not trace or not span:
        return None
    return trace, span, bool(int(flags, 16) & 1)


def parse_tracestate(raw: bytes) -> str:
    """A valid W3C ``tracestate`` as ``k=v,k2=v2``; "" when absent or malformed (dropped whole, as the SDK does)."""
    if len(raw) > 8192:
        return ""
    members, keys = [], set()
    for part in raw.decode("latin-1").split(","):
        part = part.strip(" \t")
        if not part:
            continue
        match = _MEMBER.fullmatch(part)
        if match is None or match.group(1) in keys:
            return ""
        keys.add(match.group(1))
        members.append(part)
    return ",".join(members) if len(members) <= 32 else ""


class Tracing:
    """What the edge asks of tracing: start a request's trace, queue it when it ends, flush at shutdown."""

    def __init__(self, settings: OtelSettings, version: str = "", send=None) -> None:
        self.settings = settings
        self._bound, self._follow = settings.root_bound, settings.follow_parent
        self._sender = Sender(settings, version) if send is None else None
        self._resource = otlp.resource(settings.resource)
        self._scope = otlp.scope("subrelay", version)
        self.batcher = Batcher(settings, self._encode, self._envelope, send or self._sender.send,
                               self._sender.stop if self._sender is not None else None)

    @classmethod
    def from_env(cls, env: Mapping[str, str], version: str = "") -> "Tracing | None":
        """The tracer when OTEL_* asks for one, else None (a malformed endpoint is a warning, not a failure)."""
        if not wanted(env):
            return None
        settings = settings_from_env(env, version)
        if endpoint_parts(settings.endpoint) is None:
            log.warning("the OTLP traces endpoint is not an http(s) URL; no traces are sent")
            return None
        return cls(settings, version)

    def start(self, record: Any, headers: Mapping[bytes, bytes]) -> None:
        """Open the request's trace (continuing the client's ``traceparent`` when it sent a valid one)."""
        raw = headers.get(b"traceparent")
        parent = parse_traceparent(raw) if raw else None
        if parent is None:
            trace_id = getrandbits(128) or 1
            trace = Trace(trace_id, getrandbits(64) or 1, None, (trace_id & _LOW64) < self._bound, "")
        else:
            trace_id, parent_id, parent_sampled = parent
            state = headers.get(b"tracestate")
            trace = Trace(trace_id, getrandbits(64) or 1, parent_id,
                          parent_sampled if self._follow else (trace_id & _LOW64) < self._bound,
                          parse_tracestate(state) if state else "")
        record.trace = trace

    def finish(self, record: Any) -> None:
        """Queue the ended request's values for the export thread (nothing is built here)."""
        trace = record.trace
        if trace is None or not trace.sampled:
            return
        spans = len(trace.marks) + 3
        self.batcher.add((spans, trace, record.path, record.model, record.upstream_model, record.provider,
                          record.route, record.status, record.request_id, record.person, record.usage,
                          tuple(record.notes) if record.notes else (), record.error, record.started,
                          record.first_byte, record.ended or time.perf_counter()), spans)

    def _envelope(self, spans: list[bytes]) -> bytes:
        return otlp.export_request(self._resource, self._scope, spans)

    @staticmethod
    def _encode(entry: tuple) -> tuple[bytes, int]:
        """The request's spans as OTLP bytes (ScopeSpans.spans fields) and their number, in the export thread: a
        child per mark, first byte and stream, then the request's SERVER span. What repeats request after request
        (names, kinds, attributes, statuses, most lengths) comes from :data:`_shapes`; only ids, times, the
        request id and the token counts are written each time, and the whole request is one join."""
        (_, trace, path, model, upstream_model, provider, route, status, request_id, person, usage, notes, error,
         started, first_byte, ended) = entry
        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter times on the request path → epoch ns
        root_id = trace.span_id.to_bytes(8, "big")
        head = b"\x0a\x10" + trace.trace_id.to_bytes(16, "big") + b"\x12\x08"
        state = otlp.field(b"\x1a", trace.state.encode()) if trace.state else b""
        tail = state + b"\x22\x08" + root_id
        marks = trace.marks
        fresh = randbytes(8 * len(marks) + 16)  # the children's span ids
        while _ZERO_ID in fresh:  # never the invalid all-zero id (a misaligned match only draws again)
            fresh = randbytes(len(fresh))
        parts: list[bytes] = []
        connected = None
        at = 0
        for name, start, end, extra in marks:
            key = (name, tuple(extra.items()), len(tail))
            shape = _shapes.get(key) or _mark_shape(key)
            parts += (shape[0], head, fresh[at:at + 8], tail, shape[1],
                      _TIMES(0x39, offset + int(start * 1e9), 0x41, offset + int(end * 1e9)), shape[2])
            at += 8
            if shape[3]:
                connected = end
        if connected is not None and first_byte is not None:
            first, stream = _FIRST_BYTE.get(len(tail)) or _fixed_shapes(len(tail))
            start, middle = offset + int(connected * 1e9), offset + int(max(first_byte, connected) * 1e9)
            parts += (first[0], head, fresh[at:at + 8], tail, first[1], _TIMES(0x39, start, 0x41, middle), first[2],
                      stream[0], head, fresh[at + 8:at + 16], tail, stream[1],
                      _TIMES(0x39, middle, 0x41, max(middle, offset + int(ended * 1e9))), stream[2])
            at += 16
        remote = trace.parent_id is not None
        key = (path, model, upstream_model, provider, route, status, person, error, notes, remote)
        shape = _shapes.get(key) or _root_shape(key)
        counts = b""
        if usage is not None:
            tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0)
            counts = _shapes.get(tokens) or _usage_shape(tokens)
        field = otlp.field
        request = field(b"\x4a", field(_REQUEST_ID, field(b"\x0a", request_id.encode("utf-8", "replace"))))
        tail = state + (b"\x22\x08" + trace.parent_id.to_bytes(8, "big") if remote else b"")
        length = len(tail) + shape[3] + len(request) + len(counts)
        parts += (b"\x12", otlp.LENGTHS[length] if length < 4096 else otlp.varint(length), head, root_id, tail,
                  shape[0], _TIMES(0x39, offset + int(started * 1e9), 0x41, offset + int(ended * 1e9)), shape[1],
                  request, counts, shape[2])
        return b"".join(parts), at // 8 + 1

    def shutdown(self) -> None:
        """Send what is queued and stop the export thread (at server shutdown; bounded by the exporter's timeout)."""
        self.batcher.shutdown(self.settings.timeout)
        if self._sender is not None:
            self._sender.close()
