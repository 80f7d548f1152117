"""Finished requests' spans, queued on the request path and exported in batches by one thread.

The request path only appends an entry (plain values, no span objects) to a list and counts its spans; the
thread wakes every ``OTEL_BSP_SCHEDULE_DELAY`` (or as soon as a batch's worth is waiting), builds and encodes
the spans (proxy.observe.trace_spans) and POSTs them as OTLP/HTTP protobuf on one kept-alive connection:
429/502/503/504 and connection errors are retried with backoff, each batch within its timeout. The queue is bounded (``OTEL_BSP_MAX_QUEUE_SIZE`` spans): when the collector is slow or down,
new spans are dropped and counted (``subrelay_trace_spans_dropped_total{reason="queue full"}``), never
waited for, so tracing can never stall or grow a request. Shutdown sends what is queued, bounded by the
exporter's timeout.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from proxy.observe.metrics import TRACE_SPANS_DROPPED
from proxy.observe.otel_env import OtelSettings, endpoint_parts
from proxy.observe.redact import get_logger

log = get_logger("subrelay.tracing")
_RETRIED = frozenset({429, 502, 503, 504})
_MAX_ATTEMPTS = 6


class Sender:
    """POSTs encoded export requests to the collector: HTTP/1.1 written and read directly on one kept-alive
    socket (TLS when the endpoint is https). http.client cost about 395 k instructions per POST (its header
    parsing goes through the email package) — 20 % of a traced request at the probe's batch sizes; this reads
    the status line and the few headers it needs (Content-Length, Transfer-Encoding, Connection, Retry-After)."""

    def __init__(self, settings: OtelSettings, version: str = "") -> None:
        parts = endpoint_parts(settings.endpoint)
        if parts is None:
            raise ValueError("not an http(s) endpoint")
        self.scheme, self.host, self.port, self.path = parts
        self.gzip = settings.gzip
        self.timeout = settings.timeout
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        headers = {"host": host if self.port == default_port else f"{host}:{self.port}",
                   "content-type": "application/x-protobuf", "user-agent": f"subrelay/{version or 'unknown'}",
                   **{name: value for name, value in settings.headers.items() if name not in _FRAMING}}
        if self.gzip:
            headers["content-encoding"] = "gzip"
        self._head = (f"POST {self.path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in
                                                            headers.items() if _SAFE.fullmatch(f"{name}{value}"))
                      + "content-length: ").encode("latin-1", "replace")
        self._context: ssl.SSLContext | None = None
        if self.scheme == "https":
            self._context = ssl.create_default_context(cafile=settings.ca_file)
            if settings.client_cert:
                self._context.load_cert_chain(settings.client_cert, settings.client_key)
        self._socket: socket.socket | None = None
        self.stop = threading.Event()  # set at shutdown: a backoff wait ends at once
        _senders.add(self)

    def send(self, payload: bytes, timeout: float) -> str | None:
        """Export one request; None when the collector took it, else why not (no URL, no header value)."""
        body = gzip.compress(payload, compresslevel=6) if self.gzip else payload
        deadline = time.monotonic() + min(timeout, self.timeout)
        reason = "timed out"
        for attempt in range(_MAX_ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            reused = self._socket is not None
            try:
                status, retry_after = self._post(body, remaining)
            except (OSError, ValueError) as error:
                self.close()
                reason, retry_after = type(error).__name__, None
                if reused and attempt == 0:
                    continue  # a kept-alive connection the collector had closed: once more, at once
            else:
                if 200 <= status < 300:
                    return None
                reason = f"HTTP {status}"
                if status not in _RETRIED:
                    return reason
            wait = retry_after if retry_after is not None else 2 ** attempt * random.uniform(0.8, 1.2)
            if time.monotonic() + wait >= deadline or self.stop.wait(wait):
                break
        return reason

    def _post(self, body: bytes, timeout: float) -> tuple[int, float | None]:
        sock = self._socket
        if sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
            self._socket = sock
        sock.settimeout(timeout)
        head = b"".join((self._head, str(len(body)).encode(), b"\r\n\r\n"))
        if self._context is None:
            _send_all(sock, head, body)
        else:
            sock.sendall(head + body)  # an SSL socket has no sendmsg
        while True:
            status, headers, rest = _read_head(sock)
            if status >= 200:
                break
            if status == 101:
                raise ValueError("the collector switched protocols")
        keep = _read_body(sock, headers, rest) and headers.get("connection", "").lower() != "close"
        if not keep:
            self.close()
        retry_after = headers.get("retry-after")
        try:
            wait = min(float(retry_after), 60.0) if retry_after else None
        except ValueError:
            wait = None
        return status, wait

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})  # ours, not the user's
_SAFE = re.compile(r"[^\r\n\x00]*")  # a header line can never be split by a value
_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 1 << 20  # an ExportTraceServiceResponse is a few bytes


def _send_all(sock: socket.socket, head: bytes, body: bytes) -> None:
    """The request's head and body in one system call when the socket takes them (no copy of the body)."""
    sent = sock.sendmsg((head, body))
    total = len(head) + len(body)
    if sent < total:
        sock.sendall((head + body)[sent:])


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The response's status, its headers (names lowercased) and what was read past them."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _HEAD_LIMIT:
            raise ValueError("the collector's response head is too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the collector closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, code = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return int(code[:3]), headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], data: bytes) -> bool:
    """Read (and drop) the response's body; whether the connection may be used again."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:  # chunk size lines, chunks, until the last (empty) chunk and the end of its trailers
            while b"\r\n" not in data:
                data = _more(sock, data)
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while not (data.startswith(b"\r\n") or b"\r\n\r\n" in data):
                    data = _more(sock, data)
                return True
            while len(data) < size + 2:
                data = _more(sock, data)
            data = data[size + 2:]
    length = headers.get("content-length")
    if length is not None:
        remaining = int(length) - len(data)
        if remaining > _BODY_LIMIT:
            return False
        while remaining > 0:
            chunk = sock.recv(min(remaining, 65536))
            if not chunk:
                return False
            remaining -= len(chunk)
        return True
    while len(data) < _BODY_LIMIT:  # no length: the body ends when the collector closes
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return False


def _more(sock: socket.socket, data: bytes) -> bytes:
    if len(data) > _BODY_LIMIT:
        raise ValueError("the collector's response is too long")
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionResetError("the collector closed the connection")
    return data + chunk


_batchers: "weakref.WeakSet[Batcher]" = weakref.WeakSet()
_senders: "weakref.WeakSet[Sender]" = weakref.WeakSet()


class Batcher:
    """The bounded queue of entries and the export thread (started with the first entry, again after a fork)."""

    def __init__(self, settings: OtelSettings, encode: Callable[[list], list[tuple[bytes, int] | None]],
                 envelope: Callable[[list[bytes]], bytes], send: Callable[[bytes, float], str | None],
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self._encode, self._envelope, self._send = encode, envelope, send
        self._stop = stop or threading.Event()
        self._reset()
        _batchers.add(self)

    def _reset(self) -> None:
        self._pending: list = []
        self._added = 0  # spans queued: written by the request path only
        self._taken = 0  # spans taken off the queue: written by the thread only
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._warned = 0.0
        self.exported = 0  # spans the collector took
        self.dropped = 0  # spans dropped, queue full or export failed

    def add(self, entry: tuple, spans: int) -> None:
        """Queue one request's entry (``spans`` of them); dropped and counted when the queue is full."""
        waiting = self._added - self._taken
        if waiting + spans > self.settings.max_queue or self._stopping:
            self._drop(spans, "queue full")
            return
        self._pending.append(entry)
        self._added += spans
        if self._thread is None:
            self._start()
        elif waiting + spans >= self.settings.max_batch and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="subrelay-otlp-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.settings.schedule_delay)
            self._wake.clear()
            if self._stopping:
                return  # shutdown() sends the rest within its own bound
            self._export(time.monotonic() + self.settings.export_timeout)

    def _export(self, deadline: float) -> None:
        """Encode and send everything queued now, in batches of at most OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans."""
        taken, self._pending = self._pending, []  # an append racing this lands in one list or the other
        if not taken:
            return
        try:
            encoded = self._encode(taken)
        except Exception:  # noqa: BLE001 - a bug must not stop the thread
            encoded = [None] * len(taken)
        batch: list[bytes] = []
        spans = counted = 0
        for entry, result in zip(taken, encoded):
            counted += entry[0]
            if result is None:
                log.error("a trace could not be encoded; its spans are dropped")
                continue
            data, number = result
            if batch and spans + number > self.settings.max_batch:  # a request's spans stay in one batch
                self._post(batch, spans, counted - entry[0], deadline)
                batch, spans, counted = [], 0, entry[0]
            batch.append(data)
            spans += number
        self._post(batch, spans, counted, deadline)

    def _post(self, batch: list[bytes], spans: int, counted: int, deadline: float) -> None:
        self._taken += counted
        if not batch:
            return
        reason = self._send(self._envelope(batch), max(0.0, deadline - time.monotonic()))
        if reason is None:
            self.exported += spans
        else:
            self._drop(spans, "export failed", reason)

    def _drop(self, spans: int, kind: str, detail: str = "") -> None:
        self.dropped += spans
        TRACE_SPANS_DROPPED.labels(kind).inc(spans)
        now = time.monotonic()
        if now - self._warned > 60:  # one line a minute, however many are dropped
            self._warned = now
            log.warning("trace spans dropped (%s%s); %d so far", kind, f": {detail}" if detail else "", self.dropped)

    def shutdown(self, timeout: float) -> None:
        """Send what is queued (within ``timeout`` seconds) and stop the thread."""
        self._stopping = True
        self._stop.set()  # a retry's backoff ends now
        thread = self._thread
        deadline = time.monotonic() + timeout
        if thread is not None:
            self._wake.set()
            thread.join(timeout)
        if thread is not None and thread.is_alive():
            return  # still in an export that outlived the bound: the rest is dropped with the process
        self._stop.clear()  # the final export may retry within the deadline
        if time.monotonic() < deadline and self._pending:
            self._export(deadline)


def _after_fork() -> None:  # a forked worker starts with an empty queue, its own thread and its own connection
    for batcher in list(_batchers):
        batcher._reset()
    for sender in list(_senders):
        sender.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
