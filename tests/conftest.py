"""Shared fixtures: a mock Codex upstream server, an auth.json for it, and a running proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from proxy.server.app import create_app
from proxy.config.settings import Settings
from tests.mock_upstream import MockCodexServer, MockState, ServerThread


@dataclass
class MockUpstream:
    app: MockCodexServer
    thread: ServerThread

    @property
    def state(self) -> MockState:
        return self.app.state

    @property
    def url(self) -> str:
        return self.thread.url


@pytest.fixture(scope="session")
def _mock_server() -> Iterator[MockUpstream]:
    app = MockCodexServer()
    with ServerThread(app) as thread:
        yield MockUpstream(app, thread)


@pytest.fixture
def mock_codex(_mock_server: MockUpstream) -> MockUpstream:
    _mock_server.app.state = MockState()  # a clean backend for every test
    return _mock_server


def write_auth_file(path: str, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))


@pytest.fixture
def auth_path(tmp_path, mock_codex: MockUpstream) -> str:
    path = str(tmp_path / "auth.json")
    write_auth_file(path, mock_codex.state.auth_file())
    return path


@pytest.fixture
def proxy_settings(mock_codex: MockUpstream, auth_path: str) -> Settings:
    return Settings(
        codex_base_url=f"{mock_codex.url}/backend-api/codex",
        codex_token_url=f"{mock_codex.url}/oauth/token",
        codex_auth_path=auth_path,
    )


@pytest.fixture
def proxy_url(proxy_settings: Settings) -> Iterator[str]:
    with ServerThread(create_app(proxy_settings)) as thread:
        yield f"{thread.url}/v1"


@pytest.fixture(autouse=True)
def _no_websocket_beyond_loopback(monkeypatch):
    """Tests never reach the network: a Codex WebSocket to anything but loopback is refused (as a
    network without it would), so tests that mock chatgpt.com with respx fall back to HTTP at once."""
    from proxy.upstream import codex_socket

    real = codex_socket._connect

    async def loopback_only(url, *args):
        if not url.startswith(("ws://127.0.0.1:", "ws://localhost:", "wss://127.0.0.1:")):
            raise OSError("tests refuse WebSockets beyond loopback")
        return await real(url, *args)

    monkeypatch.setattr(codex_socket, "_connect", loopback_only)
