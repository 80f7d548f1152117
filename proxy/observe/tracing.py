"""OpenTelemetry traces of model requests: an optional observer beside the metrics, off (and free) by default.

On when the standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (or ``OTEL_TRACES_EXPORTER=otlp``), unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Everything else — headers, timeouts, compression,
the sampler, ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` — is read by the OpenTelemetry SDK itself,
the standard way. Export is OTLP over HTTP/protobuf from the SDK's batch processor (its own thread), never
on the request path. Needs the ``otel`` extra (``pip install 'subrelay[otel]'``).

One trace per model request, with the GenAI semantic conventions on the request's span
(``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``error.type``) and child spans for what it waited on:
``admission`` (the team policy: limits, allow-list, the quota-aware switch), ``upstream connect`` (each try
of a route, up to its response headers), ``fallback`` (moving to the next route, with the reason),
``first byte`` (headers to the first byte the client got) and ``stream`` (the rest of the answer). The
request's span continues the client's W3C ``traceparent``; OpenAI-compatible upstreams (vLLM, LiteLLM,
Ollama… all propagate W3C context) get ours, so their spans join the same trace.

Off, the request path pays one ``is None`` test per step: the edge sets no trace on the record, and every
mark below is behind ``record.trace is not None``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.observe.redact import get_logger

log = get_logger("subrelay.tracing")
_OPERATIONS = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "chat",
               "/responses": "chat", "/v1/responses/compact": "chat", "/v1/messages": "chat"}


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    exporters = {part.strip().lower() for part in (env.get("OTEL_TRACES_EXPORTER") or "").split(",") if part.strip()}
    if "none" in exporters:
        return False
    return "otlp" in exporters or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                       or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


@dataclass(slots=True)
class Trace:
    """One request's span and what the request path marked on it (perf_counter times)."""

    span: Any
    context: Any
    wall0: int  # epoch ns at the request's start
    perf0: float  # its perf_counter at the same moment
    marks: list[tuple[str, float, float, dict]] = field(default_factory=list)

    def mark(self, name: str, start: float, end: float, **attributes: Any) -> None:
        self.marks.append((name, start, end, attributes))

    def traceparent(self) -> dict[str, str]:
        """The W3C header for an upstream call made inside this request's span."""
        ctx = self.span.get_span_context()
        return {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"}

    def ns(self, perf: float) -> int:
        return self.wall0 + int((perf - self.perf0) * 1e9)


class Tracing:
    """The tracer provider and what the edge asks of it: start a request's span, end it with its children."""

    def __init__(self, provider: Any, version: str = "") -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("subrelay", version or None)
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace

    @classmethod
    def from_env(cls, env: Mapping[str, str], version: str = "") -> "Tracing | None":
        """The tracer when OTEL_* asks for one, else None (the SDK missing is a warning, not a failure)."""
        if not wanted(env):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
                        "(pip install 'subrelay[otel]'); no traces are sent")
            return None
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "")
        if protocol.strip() and protocol.strip() != "http/protobuf":
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: subrelay exports OTLP over http/protobuf only", protocol[:20])
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "subrelay"})
        provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers… from OTEL_*
        return cls(provider, version)

    def start(self, record: Any, headers: Mapping[bytes, bytes]) -> None:
        """Open the request's span (a child of the client's ``traceparent`` when it sent a valid one)."""
        from opentelemetry.trace import SpanKind

        carrier = {}
        parent = headers.get(b"traceparent")
        if parent:
            carrier["traceparent"] = parent.decode("latin-1")[:128]
            state = headers.get(b"tracestate")
            if state:
                carrier["tracestate"] = state.decode("latin-1")[:512]
        parent_context = self._propagator.extract(carrier) if carrier else None
        wall0 = time.time_ns() - int((time.perf_counter() - record.started) * 1e9)
        span = self.tracer.start_span(_OPERATIONS.get(record.path, "chat"), context=parent_context,
                                      kind=SpanKind.SERVER, start_time=wall0)
        record.trace = Trace(span, self._trace.set_span_in_context(span, parent_context), wall0, record.started)

    def finish(self, record: Any) -> None:
        """End the request's span: its GenAI attributes, then a child span per mark, first byte and stream."""
        trace = record.trace
        if trace is None:
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        span = trace.span
        operation = _OPERATIONS.get(record.path, "chat")
        span.update_name(f"{operation} {record.model}" if record.model not in ("-", "") else operation)
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation, "http.response.status_code": record.status,
                                      "subrelay.request_id": record.request_id, "subrelay.person": record.person}
        if record.model not in ("-", ""):
            attributes["gen_ai.request.model"] = record.model
        if record.upstream_model not in ("-", ""):
            attributes["gen_ai.response.model"] = record.upstream_model
        if record.provider not in ("-", ""):
            attributes["gen_ai.provider.name"] = record.provider
            attributes["subrelay.route"] = record.route
        if record.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = record.usage.prompt_tokens or 0
            attributes["gen_ai.usage.output_tokens"] = record.usage.completion_tokens or 0
        if record.notes:
            attributes["subrelay.decision"] = "; ".join(record.notes)
        if record.status >= 400 or record.status == 0:
            attributes["error.type"] = record.error or str(record.status or "cancelled")
            span.set_status(Status(StatusCode.ERROR, record.error or ""))
        span.set_attributes(attributes)
        connected = None
        for name, start, end, extra in trace.marks:
            kind = SpanKind.CLIENT if name == "upstream connect" else SpanKind.INTERNAL
            child = self.tracer.start_span(name, context=trace.context, kind=kind, start_time=trace.ns(start),
                                           attributes={k: v for k, v in extra.items() if v is not None})
            if extra.get("error.type"):
                child.set_status(Status(StatusCode.ERROR, str(extra["error.type"])))
            child.end(end_time=trace.ns(end))
            if name == "upstream connect" and not extra.get("error.type"):
                connected = end
        ended = record.ended or time.perf_counter()
        if connected is not None and record.first_byte is not None:
            for name, start, end in (("first byte", connected, record.first_byte), ("stream", record.first_byte, ended)):
                self.tracer.start_span(name, context=trace.context, start_time=trace.ns(start)).end(
                    end_time=trace.ns(max(end, start)))
        span.end(end_time=trace.ns(ended))

    def shutdown(self) -> None:
        """Flush what is queued and stop the exporter's thread (at server shutdown; bounded by the SDK)."""
        self.provider.shutdown()
