"""Issue 25, item 9: a Host header that is not ``host[:port]`` (``127.0.0.1/#@other-host``, the
vector of CVE-2026-49468 in another gateway: a URL built from it points at the other host) is a
400 on every surface, before any other check, even where every host name is allowed."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from proxy.server.app import create_app
from proxy.server.uvicorn import uvicorn_config
from tests.mock_upstream import ServerThread

BAD_HOSTS = ["127.0.0.1/#@other-host", "127.0.0.1:8787/#@other-host", "127.0.0.1#@evil.example",
             "user@127.0.0.1", "127.0.0.1?x=1", "127.0.0.1 evil.example", "127.0.0.1:99999", "127.0.0.1:80:80",
             "[::1]/x", "127.0.0.1\\evil.example", ""]
# Every door: the model APIs, the native Codex paths, the account and admin pages, metrics, the root.
SURFACES = [("POST", "/v1/chat/completions"), ("POST", "/v1/messages"), ("GET", "/v1/models"),
            ("POST", "/backend-api/codex/responses"), ("GET", "/backend-api/codex/models"),
            ("GET", "/account"), ("GET", "/admin"), ("GET", "/api/admin/users"), ("GET", "/metrics"),
            ("GET", "/"), ("GET", "/healthz"), ("OPTIONS", "/v1/responses")]
UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def _status(port: int, method: str, path: str, host: str, extra: str = "") -> tuple[int, bytes]:
    """One raw HTTP/1.1 request (so the Host goes exactly as written) and the status it got."""
    body = b'{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}' if method == "POST" else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nOrigin: http://{host}\r\nConnection: close\r\n{extra}\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode("latin-1") + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = conn.recv(65536)
            if not piece:
                break
            answer += piece
        if answer.startswith(b"HTTP/1.1 101"):
            return 101, answer  # an accepted socket: nothing more to read
        try:
            while True:
                piece = conn.recv(65536)
                if not piece:
                    break
                answer += piece
        except TimeoutError:
            pass
    return int(answer.split(b" ", 2)[1]), answer


@pytest.fixture(params=["loopback", "any host allowed"])
def server(request, proxy_settings):
    settings = replace(proxy_settings, host="127.0.0.1", port=0, log_level="warning", admin_key="a" * 32,
                       allowed_hosts=("*",) if request.param != "loopback" else ())
    config = uvicorn_config(create_app(settings), settings)
    config.lifespan = "on"
    thread = ServerThread(None, config=config).start()
    yield thread
    thread.stop()


def test_a_host_that_is_not_host_port_is_refused_everywhere(server, mock_codex):
    refused = {}
    for host in BAD_HOSTS:
        for method, path in SURFACES:
            status, answer = _status(server.port, method, path, host)
            if status != 400 or b"is not a host name with an optional port" not in answer:
                refused[(host, method, path)] = status
        status, answer = _status(server.port, "GET", "/v1/responses", host, UPGRADE)  # the WebSocket upgrade
        if status != 400 or b"is not a host name with an optional port" not in answer:
            refused[(host, "upgrade", "/v1/responses")] = status
    assert refused == {}
    assert mock_codex.state.requests == []  # nothing reached the upstream
    # A well-formed Host still works, with a port and as an IPv6 literal.
    for host in ("127.0.0.1", f"127.0.0.1:{server.port}", "localhost:8787", "[::1]:8787"):
        status, answer = _status(server.port, "GET", "/v1/models", host)
        assert status == 200, (host, answer[:300])
    assert _status(server.port, "GET", "/v1/responses", "127.0.0.1", UPGRADE)[0] == 101
