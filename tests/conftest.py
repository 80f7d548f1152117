"""Shared fixtures: a mock Codex upstream server, an auth.json for it, and a running proxy."""

from __future__ import annotations

import os
import shutil
import tempfile
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


# What a person's shell may hold that would change what subrelay does: none of it reaches a test.
_PERSONAL = ("SUBRELAY_", "CODEX_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_", "XAI_", "GROQ_", "PERPLEXITY_",
             "GEMINI_", "GITHUB_TOKEN", "CLAUDE_", "PROMETHEUS_MULTIPROC_DIR")


def _scrub_environment() -> None:
    for name in list(os.environ):
        if name.startswith(_PERSONAL):
            del os.environ[name]


def pytest_configure(config) -> None:
    """Before any fixture (module- and session-scoped ones too): a private HOME for the whole run and
    none of the caller's variables. npm keeps its download cache in the real home (a re-run does not
    fetch the npm clients' packages again)."""
    real_home = os.path.expanduser("~")
    os.environ.setdefault("npm_config_cache", os.path.join(real_home, ".npm"))
    config._subrelay_home = tempfile.mkdtemp(prefix="subrelay-tests-home-")
    os.environ["HOME"] = config._subrelay_home
    _scrub_environment()


def pytest_unconfigure(config) -> None:
    home = getattr(config, "_subrelay_home", None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory, monkeypatch) -> None:
    """Every test gets an empty HOME of its own and none of the caller's subrelay, Codex or vendor
    variables, so a machine with a ``~/.subrelay`` team store, a ``~/.codex`` login or an exported key
    runs the suite exactly as a clean one does (subprocesses inherit the same environment)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(_PERSONAL):
            monkeypatch.delenv(name)


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
