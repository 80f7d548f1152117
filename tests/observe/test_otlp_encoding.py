"""subrelay writes the OTLP protobuf bytes of its spans by hand (proxy.observe.otlp, trace_spans): these
decode them with the official classes (``opentelemetry-proto``) and check every field a collector reads, and
that protobuf's own serializer gives back the very same bytes (so nothing is out of order, duplicated or
left as a default protobuf would omit)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is a test dependency (pip install -e '.[test]')")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

from proxy.hub.events import Usage  # noqa: E402
from proxy.observe.metrics import RequestRecord  # noqa: E402
from proxy.observe.otel_env import settings_from_env  # noqa: E402
from proxy.observe.tracing import Tracing, parse_tracestate, parse_traceparent  # noqa: E402

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _tracing(env: dict | None = None) -> tuple[Tracing, list[bytes]]:
    sent: list[bytes] = []
    settings = settings_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **(env or {})}, "9.8.7")
    return Tracing(settings, "9.8.7", send=lambda payload, timeout: sent.append(payload)), sent


def _request(tracing: Tracing, headers: dict, *, status: int = 200, failed_first: bool = False,
             usage: Usage | None = None, model: str = "primary/gpt-x") -> RequestRecord:
    """A request through the calls the edge and dispatch make, with perf_counter times as they take them."""
    record = RequestRecord("req-" + "7" * 40, "POST", "/v1/chat/completions")
    record.person = "alice"
    tracing.start(record, headers)
    trace = record.trace
    t = time.perf_counter()
    trace.mark("admission", t, t + 0.001)
    if failed_first:
        trace.mark("upstream connect", t + 0.001, t + 0.002, **{"subrelay.route": "primary/gpt-x",
                   "http.response.status_code": 429, "error.type": "rate_limited"})
        trace.mark("fallback", t + 0.002, t + 0.002, **{"subrelay.from": "primary/gpt-x",
                   "subrelay.to": "backup/gpt-x", "subrelay.reason": "429 rate_limited"})
        record.note("fallback primary/gpt-x (429) -> backup/gpt-x")
    trace.mark("upstream connect", t + 0.002, t + 0.003, **{"subrelay.route": "backup/gpt-x",
               "http.response.status_code": status, "error.type": None if status < 400 else "upstream_error"})
    record.routed(model, "backup/gpt-x", "backup", True, "gpt-x")
    record.status, record.usage = status, usage
    record.error = None if status < 400 else "upstream_error"
    record.first_byte = t + 0.004 if status < 400 else None
    record.ended = t + 0.006
    tracing.finish(record)
    return record


def _decoded(payloads: list[bytes]) -> tuple[ExportTraceServiceRequest, list]:
    assert len(payloads) == 1
    request = ExportTraceServiceRequest()
    request.ParseFromString(payloads[0])
    assert request.SerializeToString() == payloads[0]  # canonical: protobuf writes exactly these bytes
    return request, [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def _attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def test_a_fallback_request_decodes_field_by_field_with_the_official_classes():
    tracing, sent = _tracing({"OTEL_SERVICE_NAME": "gateway", "OTEL_RESOURCE_ATTRIBUTES":
                              "deployment.environment=prod,team=ml%20infra,service.name=ignored"})
    record = _request(tracing, {b"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode(),
                                b"tracestate": b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"},
                      failed_first=True, usage=Usage(prompt_tokens=5, completion_tokens=300, total_tokens=305))
    tracing.shutdown()
    request, spans = _decoded(sent)

    (resource_spans,) = request.resource_spans
    assert {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes} == {
        "service.name": "gateway", "deployment.environment": "prod", "team": "ml infra",
        "telemetry.sdk.language": "python", "telemetry.sdk.name": "subrelay", "telemetry.sdk.version": "9.8.7"}
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("subrelay", "9.8.7")

    root = next(span for span in spans if span.kind == Span.SPAN_KIND_SERVER)
    assert root.name == "chat primary/gpt-x"
    assert root.trace_id.hex() == CLIENT_TRACE and root.parent_span_id.hex() == CLIENT_SPAN
    assert root.span_id.hex() == record.trace.span_id.hex()
    assert root.trace_state == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert root.flags == 0x300  # the parent's remoteness known, and remote
    assert root.status.code == Status.STATUS_CODE_UNSET and root.HasField("status")
    assert _attributes(root) == {
        "gen_ai.operation.name": "chat", "http.response.status_code": 200, "subrelay.request_id": "req-" + "7" * 40,
        "subrelay.person": "alice", "gen_ai.request.model": "primary/gpt-x", "gen_ai.response.model": "gpt-x",
        "gen_ai.provider.name": "backup", "subrelay.route": "backup/gpt-x", "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 300, "subrelay.decision": "fallback primary/gpt-x (429) -> backup/gpt-x"}
    assert not (root.events or root.links or root.dropped_attributes_count)

    children = sorted((span for span in spans if span is not root), key=lambda s: (s.start_time_unix_nano, s.name))
    assert [c.name for c in children] == ["admission", "upstream connect", "fallback", "upstream connect",
                                          "first byte", "stream"]
    assert len({c.span_id for c in children} | {root.span_id}) == 7 and all(len(c.span_id) == 8 for c in children)
    for child in children:
        assert child.trace_id == root.trace_id and child.parent_span_id == root.span_id
        assert child.trace_state == root.trace_state and child.flags == 0x100  # a local parent
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano \
            <= root.end_time_unix_nano
    kinds = {c.name: c.kind for c in children}
    assert kinds["upstream connect"] == Span.SPAN_KIND_CLIENT and kinds["admission"] == Span.SPAN_KIND_INTERNAL
    failed, answered = (c for c in children if c.name == "upstream connect")
    assert failed.status.code == Status.STATUS_CODE_ERROR and failed.status.message == "rate_limited"
    assert _attributes(failed) == {"subrelay.route": "primary/gpt-x", "http.response.status_code": 429,
                                   "error.type": "rate_limited"}
    assert answered.status.code == Status.STATUS_CODE_UNSET
    assert _attributes(answered) == {"subrelay.route": "backup/gpt-x", "http.response.status_code": 200}
    assert _attributes(children[2]) == {"subrelay.from": "primary/gpt-x", "subrelay.to": "backup/gpt-x",
                                        "subrelay.reason": "429 rate_limited"}
    assert children[4].end_time_unix_nano == children[5].start_time_unix_nano  # first byte, then the stream
    assert abs(root.start_time_unix_nano - time.time_ns()) < 60e9  # epoch nanoseconds, not perf_counter's


def test_a_failed_request_without_a_parent_is_a_root_span_with_an_error_status():
    tracing, sent = _tracing()
    record = _request(tracing, {}, status=502, model="ünïcode/modèl")
    tracing.shutdown()
    _, spans = _decoded(sent)
    root = next(span for span in spans if span.kind == Span.SPAN_KIND_SERVER)
    assert root.name == "chat ünïcode/modèl" and root.parent_span_id == b"" and root.trace_state == ""
    assert root.trace_id == record.trace.trace_id and root.flags == 0x100
    assert root.status.code == Status.STATUS_CODE_ERROR and root.status.message == "upstream_error"
    assert _attributes(root)["error.type"] == "upstream_error" and "gen_ai.usage.input_tokens" not in _attributes(root)
    assert sorted(span.name for span in spans if span is not root) == ["admission", "upstream connect"]  # no bytes


def test_the_upstream_gets_our_span_as_its_parent_and_the_clients_tracestate():
    tracing, _ = _tracing()
    record = RequestRecord("r", "POST", "/v1/chat/completions")
    tracing.start(record, {b"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode(), b"tracestate": b"a=1"})
    assert record.trace.traceparent() == {"traceparent": f"00-{CLIENT_TRACE}-{record.trace.span_id.hex()}-01",
                                          "tracestate": "a=1"}
    record = RequestRecord("r", "POST", "/v1/chat/completions")
    tracing.start(record, {b"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00".encode()})  # the client did not sample
    assert record.trace.traceparent()["traceparent"].endswith("-00") and not record.trace.sampled


@pytest.mark.parametrize("header", [
    f"00-{'0' * 32}-{CLIENT_SPAN}-01", f"00-{CLIENT_TRACE}-{'0' * 16}-01", f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra",
    f"00-{CLIENT_TRACE}-{CLIENT_SPAN}", "garbage", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-0g"])
def test_a_malformed_traceparent_starts_a_new_trace(header):
    assert parse_traceparent(header.encode()) is None
    tracing, _ = _tracing()
    record = RequestRecord("r", "POST", "/v1/chat/completions")
    tracing.start(record, {b"traceparent": header.encode()})
    assert record.trace.trace_id.hex() != CLIENT_TRACE and record.trace.parent_id is None


def test_a_later_traceparent_version_is_read_and_a_malformed_tracestate_dropped_whole():
    assert parse_traceparent(f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-03-more".encode()) == (
        bytes.fromhex(CLIENT_TRACE), bytes.fromhex(CLIENT_SPAN), True)
    assert parse_tracestate(b"a=1,,b@x=2 ") == "a=1,b@x=2"
    assert parse_tracestate(b"a=1,A=2") == "" and parse_tracestate(b"a=1,a=2") == ""  # uppercase key; duplicate
    assert parse_tracestate(",".join(f"k{i}=v" for i in range(33)).encode()) == ""  # over 32 members


@pytest.mark.parametrize("sampler, argument, parent_flags, sampled", [
    ("always_off", "", None, False), ("always_on", "", "00", True), ("parentbased_always_off", "", "01", True),
    ("parentbased_always_off", "", None, False), ("parentbased_always_on", "", "00", False),
    ("traceidratio", "0", None, False), ("traceidratio", "1", "00", True),
    ("parentbased_traceidratio", "0", "01", True), ("parentbased_traceidratio", "0", None, False),
    ("unknown_sampler", "", None, True)])
def test_the_sampler_decides_as_the_specification_says(sampler, argument, parent_flags, sampled):
    tracing, sent = _tracing({"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": argument})
    headers = {} if parent_flags is None else {b"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-{parent_flags}".encode()}
    record = _request(tracing, headers)
    tracing.shutdown()
    assert record.trace.sampled is sampled and bool(sent) is sampled
    assert record.trace.traceparent()["traceparent"].endswith("-01" if sampled else "-00")  # propagated either way


def test_a_ratio_samples_by_the_trace_ids_low_bits_like_the_sdk():
    tracing, _ = _tracing({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    decisions = []
    for low in (0, (1 << 62) - 1, 1 << 62, (1 << 64) - 1):
        record = RequestRecord("r", "POST", "/v1/chat/completions")
        tracing.start(record, {b"traceparent": f"00-{(7 << 64 | low):032x}-{CLIENT_SPAN}-01".encode()})
        decisions.append(record.trace.sampled)
    assert decisions == [True, True, False, False]


@pytest.mark.parametrize("value", ["", "é" * 200, True, False, 0, 127, 128, 2**63 - 1, -1, -(2**63), 1.5, None])
def test_each_attribute_value_type_decodes_as_protobuf_writes_it(value):
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    from proxy.observe import otlp

    encoded = otlp.key_value("k", value)
    decoded = KeyValue()
    decoded.ParseFromString(encoded)
    kind = decoded.value.WhichOneof("value")
    expected = "None" if value is None else value  # anything else is sent as its string
    assert decoded.key == "k" and getattr(decoded.value, kind) == expected
    assert kind == {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value"}.get(
        type(value), "string_value")
