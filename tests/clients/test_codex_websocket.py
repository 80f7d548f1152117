"""The real Codex CLI through its built-in provider pointed at subrelay (``openai_base_url``): it
tries the Responses WebSocket first, and a turn completes over the socket (the proxy logs it)."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from contextlib import contextmanager

import pytest

from proxy.server.app import create_app
from tests.clients.test_npm_clients import _isolated_env, npm_clients  # noqa: F401 (a fixture)
from tests.mock_upstream import ServerThread


@pytest.fixture(params=[True], ids=["websockets-on"])
def websockets_on(request) -> bool:
    return request.param


@contextmanager
def codex_exec(npm_clients, settings, tmp_path, config: str):  # noqa: F811
    """A running subrelay and ``codex exec`` against it, configured by ``config`` (``{url}`` is the proxy)."""
    with ServerThread(create_app(settings)) as proxy:
        home, codex_home, workdir = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
        for folder in (home, codex_home, workdir):
            folder.mkdir()
        (codex_home / "config.toml").write_text(config.format(url=proxy.url))
        env = {**_isolated_env(home, npm_clients), "CODEX_HOME": str(codex_home), "OPENAI_API_KEY": "sk-unused-by-subrelay",
               "CODEX_API_KEY": "sk-unused-by-subrelay"}

        def run(prompt: str) -> subprocess.CompletedProcess:
            return subprocess.run([npm_clients.bin("codex"), "exec", "--skip-git-repo-check",
                                   prompt], capture_output=True, text=True, timeout=180, env=env, cwd=workdir,
                                  stdin=subprocess.DEVNULL)
        yield run


@pytest.fixture
def codex_builtin(npm_clients, proxy_settings, tmp_path, websockets_on):  # noqa: F811
    """``codex exec`` with no provider block: only ``openai_base_url`` and an API key."""
    settings = dataclasses.replace(proxy_settings, websockets=websockets_on)
    with codex_exec(npm_clients, settings, tmp_path, 'model = "gpt-5.4"\nopenai_base_url = "{url}/v1"\n') as run:
        yield run


def test_codex_cli_builtin_provider_completes_a_turn_over_the_websocket(codex_builtin, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    result = codex_builtin("say hi")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("websocket session opened") for m in messages), messages[-20:]
    turns = [m for m in messages if m.startswith("request ") and "method=WS" in m and "status=200" in m]
    assert turns, messages[-20:]  # the turn itself went over the socket, not a fallback to HTTP
    assert not any(m.startswith("request ") and "method=POST" in m and "/responses" in m for m in messages)


def test_codex_cli_chains_a_tool_round_trip_on_the_socket(codex_builtin, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    result = codex_builtin('run it [[call:exec_command:{"cmd":"echo subrelay-ws-tool-ok"}]]')
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "The tool said:" in result.stdout and "subrelay-ws-tool-ok" in result.stdout
    bodies = [r["body"] for r in mock_codex.state.requests]
    assert len(bodies) == 2  # the second turn reached the backend whole, however the CLI chained it
    assert bodies[1]["input"][0] == bodies[0]["input"][0]
    assert "subrelay-ws-tool-ok" in json.dumps(bodies[1]["input"][-1])


@pytest.mark.parametrize("websockets_on", [False], ids=["websockets-off"])
def test_codex_cli_falls_back_to_http_at_once_when_websockets_are_off(codex_builtin, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    result = codex_builtin("say hi")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    messages = [record.getMessage() for record in caplog.records if record.getMessage().startswith("request ")]
    refused = [m for m in messages if "status=426" in m]
    assert len(refused) == 1, messages  # one refused upgrade, no retries of it
    assert any("method=POST" in m and "status=200" in m for m in messages)
