"""The edge as a hostile web page, a sloppy client and a resource hog would meet it."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.server.app import create_app
from proxy.config.settings import Limits
from proxy.server.uvicorn import uvicorn_config
from tests.keepalive import ConnectionClosed, KeepAliveClient
from tests.mock_upstream import ServerThread

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def served(proxy_settings):
    """The proxy under the same uvicorn configuration `subrelay serve` uses (small limits)."""
    def start(**changes):
        limits = replace(Limits(), **changes.pop("limits", {}))
        settings = replace(proxy_settings, host="127.0.0.1", port=0, log_level="warning", limits=limits, **changes)
        config = uvicorn_config(create_app(settings), settings)
        config.lifespan = "on"
        thread = ServerThread(None, config=config).start()
        started.append(thread)
        return thread
    started: list[ServerThread] = []
    yield start
    for thread in started:
        thread.stop()


def test_a_web_page_cannot_post_a_simple_cross_site_request(served, mock_codex):
    server = served()
    # What a <form> or fetch(no-cors) from https://evil.example can send: text/plain with an Origin.
    response = httpx.post(f"{server.url}/v1/chat/completions", content=orjson.dumps(CHAT),
                          headers={"content-type": "text/plain", "origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert "SUBRELAY_ALLOWED_ORIGINS" in response.json()["error"]["message"]
    assert mock_codex.state.requests == []  # nothing was spent


def test_dns_rebinding_cannot_read_answers_or_models(served, mock_codex):
    server = served()
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
        response = httpx.request(method, f"{server.url}{path}", json=CHAT if method == "POST" else None,
                                 headers={"host": "rebind.evil.example:8787"})
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "host_not_allowed"
    assert mock_codex.state.requests == []
    assert httpx.get(f"{server.url}/v1/models", headers={"host": "localhost:8787"}).status_code == 200


def test_json_endpoints_require_a_json_content_type(served, mock_codex):
    server = served()
    response = httpx.post(f"{server.url}/v1/chat/completions", content=orjson.dumps(CHAT),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert mock_codex.state.requests == []


def test_allowed_origins_get_cors_and_preflight_answers(served):
    server = served(allowed_origins=("https://app.example",))
    preflight = httpx.options(f"{server.url}/v1/chat/completions", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers={"origin": "https://app.example"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"
    refused = httpx.options(f"{server.url}/v1/chat/completions", headers={
        "origin": "https://other.example", "access-control-request-method": "POST"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_an_oversized_declared_body_is_refused_before_it_is_read(served):
    server = served(limits={"max_body_bytes": 4096})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 104857600\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer


def test_an_oversized_chunked_body_is_cut_off_while_reading(served):
    server = served(limits={"max_body_bytes": 64 * 1024})

    def chunks():
        for _ in range(10_000):  # 160 MB if nobody stopped it
            yield b"x" * 16384

    try:
        response = httpx.post(f"{server.url}/v1/chat/completions", content=chunks(),
                              headers={"content-type": "application/json"}, timeout=20)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return  # the server answered and closed while we were still sending: also a refusal
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_that_never_finishes_gets_a_408(served):
    server = served(limits={"body_read_seconds": 0.5})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"model\":")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")


def test_idle_and_slow_header_connections_are_closed(served):
    server = served(limits={"header_read_seconds": 0.5})
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its head
    try:
        assert idle.recv(1) == b""  # closed by the server, not by the 5 s timeout here
        assert slow.recv(1) == b""
    finally:
        idle.close()
        slow.close()
    # A client that does send a request in time is served as usual, and may keep its connection.
    client = KeepAliveClient("127.0.0.1", server.port)
    assert client.request("GET", "/healthz").status == 200
    assert client.request("GET", "/healthz").status == 200
    client.close()


def test_connections_beyond_the_limit_get_503(served):
    server = served(limits={"max_connections": 4})
    hogs = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
    try:
        time.sleep(0.2)
        client = KeepAliveClient("127.0.0.1", server.port)
        try:
            assert client.request("GET", "/healthz").status == 503
        except ConnectionClosed:
            pass
        finally:
            client.close()
    finally:
        for hog in hogs:
            hog.close()
    time.sleep(0.2)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_client_keys_apply_to_every_path_but_healthz(served):
    server = served(api_keys=("k" * 20,))
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"authorization": "Bearer " + "k" * 20}).status_code == 200
    assert httpx.get(f"{server.url}/v1/models", headers={"x-api-key": "k" * 20}).status_code == 200


@pytest.mark.parametrize("extra, status", [([(b"host", b"rebind.evil.example")], 403),
                                            ([(b"content-length", b"5000")], 413)])
async def test_a_refused_post_is_read_before_its_connection_is_closed(extra, status):
    """Closing a socket with unread request bytes in it resets the connection, and the reset can destroy the
    403/413 on its way out (the client saw "connection reset" now and then): the body is read first."""
    from proxy.config.settings import Settings
    from proxy.server.edge import EdgeMiddleware

    async def never_called(scope, receive, send):
        raise AssertionError("a refused request reached the app")

    parts = [b'{"model": "gpt-5.4", "x": "', b"y" * 4900, b'"}']
    events: list[str] = []

    async def receive():
        events.append("read")
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    async def send(message):
        events.append(message["type"])
        if message["type"] == "http.response.start":
            sent.update(status=message["status"], headers=dict(message["headers"]))

    sent: dict = {}
    headers = [(b"host", b"127.0.0.1:8787"), (b"content-type", b"application/json")]
    headers = [h for h in headers if h[0] not in {name for name, _ in extra}] + extra
    edge = EdgeMiddleware(never_called, Settings(limits=Limits(max_body_bytes=4096)))
    await edge({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers,
                "query_string": b""}, receive, send)
    assert sent["status"] == status and sent["headers"][b"connection"] == b"close"
    assert events == ["read", "read", "read", "http.response.start", "http.response.body"]


def test_refused_posts_get_their_answer_not_a_reset(served):
    """The same through a real server and client, many times over."""
    server = served(limits={"max_body_bytes": 4096})
    body = orjson.dumps({**CHAT, "pad": "x" * 3000})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(40):
            assert client.post("/v1/chat/completions", content=body, headers={
                "host": "rebind.evil.example", "content-type": "application/json"}).status_code == 403
            assert client.post("/v1/chat/completions", content=body + b" " * 2000, headers={
                "content-type": "application/json"}).status_code == 413


def test_a_refusal_no_retry_can_cure_says_so_and_a_limit_does_not(served):
    """``x-should-retry: false`` on a wrong key, a refused origin, an unknown model, a malformed body: the
    SDKs (Anthropic's, OpenAI's) then stop at once; a 429 or a 408 may still be retried."""
    from proxy.errors import RateLimited, RequestTimeout

    server = served(api_keys=("client-key-0123456789abcdef",))
    keyed = {"Authorization": "Bearer client-key-0123456789abcdef"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [client.post("/v1/messages", json={"model": "gpt-5.4", "max_tokens": 5, "messages": []}),
                   client.get("/v1/models", headers={"host": "rebind.evil.example"}),
                   client.post("/v1/chat/completions", json={**CHAT, "model": "no-such-model-9"}, headers=keyed),
                   client.post("/v1/chat/completions", content=b"{", headers={**keyed, "content-type": "application/json"})]
    assert [answer.status_code for answer in answers] == [401, 403, 404, 400]
    assert all(answer.headers.get("x-should-retry") == "false" for answer in answers)
    assert "x-should-retry" not in RateLimited("slow down", retry_after=3).http_headers()
    assert "x-should-retry" not in RequestTimeout("late").http_headers()
