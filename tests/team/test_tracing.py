"""OpenTelemetry traces, checked at an OTLP receiver that decodes what arrives with the official protobuf
definitions (``opentelemetry-proto``): a request that falls back arrives as one trace continuing the
client's ``traceparent``, with the GenAI attributes and the admission, upstream connect, fallback, first
byte and stream spans; the OpenAI-compatible upstream gets our ``traceparent``. Off by default: nothing is
sent upstream then."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is a test dependency (pip install -e '.[test]')")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

from tests.team.conftest import ask  # noqa: E402

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TURN = [{"role": "user", "content": "hi"}]


class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port: every export request decoded, its spans kept."""

    def __init__(self) -> None:
        self.spans: list = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans += [(service, span) for span in scope_spans.spans]
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    opened = Receiver()
    yield opened
    opened.close()


@pytest.fixture
def extra_env(request, monkeypatch):
    if "receiver" not in request.fixturenames:
        return {}
    receiver = request.getfixturevalue("receiver")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50",
           "OTEL_SERVICE_NAME": "subrelay-test"}
    for name, value in env.items():  # the SDK reads its own variables from the process environment
        monkeypatch.setenv(name, value)
    return env


def _attributes(span) -> dict:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = value.int_value if value.HasField("int_value") else value.string_value
    return values


def test_a_fallback_request_arrives_as_one_trace_with_the_named_spans(receiver, ledger_team):
    base, admin, keys, upstream = ledger_team
    upstream.state.script.append({"status": 429, "body": {"error": {"message": "slow down", "type": "rate_limit"}}})
    import httpx

    answer = httpx.post(f"{base}/v1/chat/completions", timeout=15, json={"model": "primary/gpt-x", "messages": TURN},
                        headers={"authorization": f"Bearer {keys['alice']}",
                                 "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert answer.status_code == 200 and answer.headers["x-subrelay-route"] == "backup/gpt-x"
    deadline = time.monotonic() + 15
    while len(receiver.spans) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    spans = [span for _, span in receiver.spans]
    root = next(span for span in spans if span.name == "chat primary/gpt-x")
    assert root.trace_id.hex() == CLIENT_TRACE and root.parent_span_id.hex() == CLIENT_SPAN  # the client's trace
    attributes = _attributes(root)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "primary/gpt-x" and attributes["gen_ai.response.model"] == "gpt-x"
    assert attributes["gen_ai.provider.name"] == "backup" and attributes["gen_ai.usage.input_tokens"] == 5
    assert attributes["gen_ai.usage.output_tokens"] == 3 and attributes["subrelay.person"] == "alice"
    assert receiver.spans[0][0]["service.name"] == "subrelay-test"

    children = [span for span in spans if span.parent_span_id == root.span_id]
    assert all(child.trace_id == root.trace_id for child in children)
    assert sorted(child.name for child in children) == sorted(
        ["admission", "upstream connect", "upstream connect", "fallback", "first byte", "stream"])
    connects = sorted((c for c in children if c.name == "upstream connect"), key=lambda c: c.start_time_unix_nano)
    assert _attributes(connects[0])["subrelay.route"] == "primary/gpt-x"
    assert _attributes(connects[0])["http.response.status_code"] == 429 and "error.type" in _attributes(connects[0])
    assert connects[0].status.code == Status.STATUS_CODE_ERROR and connects[1].status.code == Status.STATUS_CODE_UNSET
    assert root.kind == Span.SPAN_KIND_SERVER and {c.kind for c in connects} == {Span.SPAN_KIND_CLIENT}
    assert _attributes(connects[1])["subrelay.route"] == "backup/gpt-x"
    fallback = next(c for c in children if c.name == "fallback")
    assert _attributes(fallback)["subrelay.to"] == "backup/gpt-x"
    for child in children:
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano <= root.end_time_unix_nano

    sent = upstream.state.requests[-1]["headers"]["traceparent"]  # the upstream joins the same trace
    assert sent == f"00-{CLIENT_TRACE}-{root.span_id.hex()}-01"


def test_with_tracing_off_no_trace_is_made_and_nothing_goes_upstream(ledger_team):
    base, admin, keys, upstream = ledger_team
    import httpx

    answer = httpx.post(f"{base}/v1/chat/completions", timeout=15, json={"model": "primary/gpt-x", "messages": TURN},
                        headers={"authorization": f"Bearer {keys['alice']}",
                                 "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert answer.status_code == 200
    assert "traceparent" not in upstream.state.requests[-1]["headers"]
