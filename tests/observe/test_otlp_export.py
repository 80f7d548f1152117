"""The OTLP/HTTP export at a collector on loopback: what the standard variables ask (endpoint, headers, gzip,
batch size) arrives; a 503 is retried; a collector that is down or hangs costs dropped, counted spans, never a
blocked request or an unbounded queue, and shutdown returns within its bound."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is a test dependency (pip install -e '.[test]')")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from proxy.observe.metrics import TRACE_SPANS_DROPPED, RequestRecord  # noqa: E402
from proxy.observe.otel_env import settings_from_env, wanted  # noqa: E402
from proxy.observe.tracing import Tracing  # noqa: E402


class Collector:
    """An OTLP/HTTP receiver on a loopback port; ``answers`` are the statuses of the next requests (then 200);
    ``hang`` makes it wait that long before answering."""

    def __init__(self, http11: bool = True) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        self.answers: list[int] = []
        self.hang = 0.0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if http11 else "HTTP/1.0"

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"]))
                if collector.hang:
                    time.sleep(collector.hang)
                collector.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = collector.answers.pop(0) if collector.answers else 200
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                if status == 503:
                    self.send_header("retry-after", "0")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def spans(self) -> list:
        out = []
        for _, headers, body in self.requests:
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            out.append([span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans])
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    opened = Collector()
    yield opened
    opened.close()


def _traced(env: dict, requests: int = 1) -> Tracing:
    tracing = Tracing.from_env(env, "1.0")
    assert tracing is not None
    for _ in range(requests):
        record = RequestRecord("r", "POST", "/v1/chat/completions")
        tracing.start(record, {})
        now = time.perf_counter()
        record.trace.mark("upstream connect", now, now, **{"subrelay.route": "p/m", "http.response.status_code": 200})
        record.status, record.first_byte, record.ended = 200, now, now
        tracing.finish(record)
    return tracing


def test_the_endpoint_headers_and_gzip_arrive_as_the_variables_ask(collector):
    tracing = _traced({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/custom/traces",
                       "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-tenant=t1",
                       "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, requests=3)
    tracing.shutdown()
    (path, headers, _), = collector.requests
    assert path == "/custom/traces"
    assert headers["authorization"] == "Bearer abc" and headers["x-tenant"] == "t1"
    assert headers["content-type"] == "application/x-protobuf" and headers["content-encoding"] == "gzip"
    assert [len(spans) for spans in collector.spans()] == [12]  # 3 requests × (connect, first byte, stream, request)


def test_batches_hold_at_most_the_batch_size_and_a_503_is_retried(collector):
    collector.answers = [503]
    tracing = _traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url + "/", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"},
                      requests=5)
    tracing.shutdown()
    assert {path for path, _, _ in collector.requests} == {"/v1/traces"}  # the base endpoint + /v1/traces
    sizes = [len(spans) for spans in collector.spans()]
    assert sizes[0] == 8 and sizes[1:] == [8, 8, 4]  # the refused batch, then all three; 20 spans sent once
    assert tracing.batcher.exported == 20 and tracing.batcher.dropped == 0


def test_an_http10_collector_that_closes_after_each_answer_gets_every_batch():
    collector = Collector(http11=False)
    try:
        tracing = _traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"},
                          requests=3)
        tracing.shutdown()
        assert [len(spans) for spans in collector.spans()] == [4, 4, 4]
    finally:
        collector.close()


def test_a_collector_that_is_down_costs_dropped_counted_spans_never_a_wait():
    before = TRACE_SPANS_DROPPED.labels("queue full")._value.get()
    started = time.perf_counter()
    tracing = _traced({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_MAX_QUEUE_SIZE": "40",
                       "OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_EXPORTER_OTLP_TIMEOUT": "500"}, requests=100)
    assert time.perf_counter() - started < 5  # 100 requests finished without waiting for anything
    assert len(tracing.batcher._pending) == 10  # 40 spans queued; the rest dropped
    assert TRACE_SPANS_DROPPED.labels("queue full")._value.get() - before == 360
    started = time.monotonic()
    tracing.shutdown()  # the final export fails (nobody listens), within the exporter's timeout
    assert time.monotonic() - started < 5 and tracing.batcher.dropped == 400


def test_shutdown_returns_within_the_timeout_when_the_collector_hangs(collector):
    collector.hang = 3
    tracing = _traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_TIMEOUT": "300"}, requests=2)
    started = time.monotonic()
    tracing.shutdown()
    assert time.monotonic() - started < 2 and tracing.batcher.exported == 0 and tracing.batcher.dropped == 8


def test_the_standard_variables_are_read_with_the_specifications_units_and_defaults():
    assert not wanted({}) and wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert Tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://c:4317"}) is None  # not http(s): a warning
    defaults = settings_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert defaults.endpoint == "http://localhost:4318/v1/traces" and defaults.timeout == 10.0
    assert (defaults.schedule_delay, defaults.max_queue, defaults.max_batch, defaults.export_timeout) == (5, 2048, 512,
                                                                                                          30)
    assert defaults.resource["service.name"] == "subrelay" and not defaults.gzip
    custom = settings_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/otlp/", "OTEL_EXPORTER_OTLP_TIMEOUT":
                                "9000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500", "OTEL_BSP_MAX_QUEUE_SIZE": "100",
                                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "500", "OTEL_BSP_SCHEDULE_DELAY": "-1",
                                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,broken"})
    assert custom.endpoint == "https://c:4318/otlp/v1/traces" and custom.timeout == 2.5  # ms; the traces one first
    assert custom.max_queue == 100 and custom.max_batch == 100 and custom.schedule_delay == 5  # bounded; defaulted
    assert custom.resource["service.name"] == "from-attributes"


def test_a_forked_worker_starts_with_an_empty_queue_and_its_own_thread(collector):
    import os

    tracing = _traced({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "60000"}, requests=2)
    assert tracing.batcher._thread is not None and len(tracing.batcher._pending) == 2
    pid = os.fork()
    if pid == 0:  # the child: the parent's queued spans are the parent's to send
        ok = tracing.batcher._pending == [] and tracing.batcher._thread is None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tracing.shutdown()
    assert [len(spans) for spans in collector.spans()] == [8]  # the parent's, sent once
