"""A client that stops reading its stream (issue 17, finding 4): after the stall limit it is dropped and
its upstream call cancelled, so idle sockets cannot hold upstream connections; readers are unaffected."""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.config.settings import Limits
from proxy.server.app import create_app
from proxy.server.uvicorn import uvicorn_config
from tests.mock_upstream import ServerThread

STALL = 2.0  # generous: a reading client on a loaded 2-core CI machine must never look stalled


@pytest.fixture
def proxy(proxy_settings):
    settings = replace(proxy_settings, host="127.0.0.1", port=0, log_level="warning",
                       limits=replace(Limits(), stall_seconds=STALL))
    config = uvicorn_config(create_app(settings), settings)
    config.lifespan = "on"
    thread = ServerThread(None, config=config).start()
    yield thread
    thread.stop()


def _never_reading_client(port: int, body: dict) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    raw = orjson.dumps(body)
    sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)
    return sock


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_client_that_never_reads_is_dropped_and_its_upstream_cancelled(proxy, mock_codex, caplog):
    caplog.set_level(logging.WARNING)
    mock_codex.state.record = False
    mock_codex.state.delta_size = 4000  # 24 MB if read in full: beyond every buffer on the way (a few MB)
    mock_codex.state.delta_count = 6000
    sockets = [_never_reading_client(proxy.port, {"model": "gpt-5.4", "input": "long", "stream": True})
               for _ in range(3)]
    try:
        assert _wait_for(lambda: mock_codex.state.cancelled_streams == 3, 60), mock_codex.state.cancelled_streams
        assert mock_codex.state.finished_streams == 0
        dropped = [r.getMessage() for r in caplog.records if "read nothing" in r.getMessage()]
        assert len(dropped) == 3
        waited = [float(re.search(r"read nothing for ([0-9.]+) s", line).group(1)) for line in dropped]
        print(f"stall limit {STALL} s: dropped after {', '.join(f'{w:.1f}' for w in waited)} s of no reading")
        assert all(STALL <= w for w in waited)
        for sock in sockets:  # the connection is gone: reading drains what was buffered, then ends
            sock.settimeout(10)
            with pytest.raises((ConnectionResetError, EOFError)):
                while sock.recv(1 << 20):
                    pass
                raise EOFError
    finally:
        for sock in sockets:
            sock.close()
    # A client that reads gets its whole (long) stream: the limit is on not reading, not on length.
    mock_codex.state.delta_size, mock_codex.state.delta_count = 8, 2000
    with httpx.stream("POST", f"{proxy.url}/v1/responses", json={"model": "gpt-5.4", "input": "x", "stream": True},
                      timeout=30) as response:
        events = [line for line in response.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: response.completed"
