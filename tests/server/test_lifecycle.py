"""Requests that outlive their client, upstreams that only ping, and stopping the server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.server.app import create_app
from proxy.config.settings import Limits
from proxy.config.file import parse_config
from tests.mock_upstream import ServerThread
from tests.mock_upstream.asgi import lifespan, read_body

SLOW = [{"role": "user", "content": "tell me [[deltas:60]] [[slow]]"}]  # 60 deltas, 0.2 s apart: 12 s


class PingOnlyUpstream:
    """An upstream that accepts the request and then sends only SSE comments, ``pings`` of them."""

    def __init__(self, pings: int = 300, gap: float = 0.05) -> None:
        self.pings, self.gap = pings, gap
        self.abandoned = 0  # responses whose reader (the proxy) went away before the end

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        await read_body(receive)
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        try:
            for _ in range(self.pings):
                await asyncio.sleep(self.gap)
                if gone.is_set():
                    self.abandoned += 1
                    return
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_non_streaming_client_that_goes_away_cancels_its_upstream_call(proxy_url, mock_codex):
    # (Streams: tests/test_e2e_clients.py checks the same for a stream closed mid-way.)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy_url}/chat/completions", json={"model": "gpt-5.4", "messages": SLOW},
                   timeout=httpx.Timeout(10, read=0.6))
    assert _wait_for(lambda: mock_codex.state.cancelled_streams == 1), "the upstream stream kept running"
    assert mock_codex.state.finished_streams == 0


def test_a_relayed_non_stream_answer_is_cancelled_with_its_client(tmp_path, mock_codex, auth_path):
    upstream = PingOnlyUpstream(pings=400)  # 20 s of pings before its (empty) end
    with ServerThread(upstream) as up:
        config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{up.url}/v1"\n'
                                            'models = ["llama3"]\n'))
        settings = replace(_settings(mock_codex, auth_path), file=config)
        app = create_app(settings)
        with ServerThread(app) as proxy:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": "local/llama3", "messages": SLOW},
                           timeout=httpx.Timeout(10, read=0.5))
            # The proxy dropped its upstream connection: the upstream sees its reader gone.
            assert _wait_for(lambda: upstream.abandoned == 1, 5)


def _settings(mock_codex, auth_path, **limits):
    from proxy.config.settings import Settings

    return Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                    codex_auth_path=auth_path, limits=replace(Limits(), **limits))


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_only_pings_cannot_hold_a_client(mock_codex, auth_path, stream):
    with ServerThread(PingOnlyUpstream()) as up:
        settings = replace(_settings(mock_codex, auth_path, stall_seconds=1.0), codex_base_url=f"{up.url}/codex")
        with ServerThread(create_app(settings)) as proxy:
            started = time.monotonic()
            response = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30,
                                  json={"model": "gpt-5.4", "messages": SLOW, "stream": stream})
            elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_stalled"
    assert elapsed < 10  # the pings would have gone on for 15 s


def test_a_relayed_stream_of_pings_is_ended_too(mock_codex, auth_path):
    with ServerThread(PingOnlyUpstream()) as up:
        config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{up.url}/v1"\n'
                                            'models = ["llama3"]\n'))
        settings = replace(_settings(mock_codex, auth_path, stall_seconds=1.0), file=config)
        with ServerThread(create_app(settings)) as proxy:
            with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=30,
                              json={"model": "local/llama3", "messages": SLOW, "stream": True}) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines and "upstream_stalled" in lines[-1]


def test_the_overall_deadline_ends_a_stream_that_keeps_talking(mock_codex, auth_path):
    settings = _settings(mock_codex, auth_path, request_seconds=1.5)
    with ServerThread(create_app(settings)) as proxy:
        with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", timeout=30,
                          json={"model": "gpt-5.4", "messages": SLOW, "stream": True}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert "request_deadline_exceeded" in lines[-1]
    assert sum('"content"' in line for line in lines) < 20  # it did stream, then stopped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_ends_open_streams_cleanly_and_exits_within_the_grace_period(mock_codex, auth_path):
    port = _free_port()
    env = {**os.environ, "CODEX_AUTH_PATH": auth_path, "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex",
           "SUBRELAY_SHUTDOWN_GRACE": "1", "SUBRELAY_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: _healthy(port), 15), "subrelay did not start"
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          json={"model": "gpt-5.4", "messages": SLOW, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if '"content"' in line)
            sent_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data:")]
        exit_code = process.wait(timeout=10)
        took = time.monotonic() - sent_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert exit_code == 0, process.stderr.read().decode()[-2000:]
    assert took < 5
    assert "server_shutting_down" in rest[-1]
    assert orjson.loads(rest[-1][5:])["error"]["type"] == "server_error"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
