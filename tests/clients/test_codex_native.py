"""The real Codex CLI's built-in provider moved onto subrelay's Codex-native base URL
(``openai_base_url = "http://127.0.0.1:PORT/backend-api/codex"``, docs/codex.md): a turn and a tool round
trip over the WebSocket at ``/backend-api/codex/responses``, and HTTP on that path when WebSockets are off."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys

import pytest

from tests.clients.test_codex_websocket import codex_exec, websockets_on  # noqa: F401 (a fixture)
from tests.clients.test_npm_clients import _isolated_env, npm_clients  # noqa: F401 (a fixture)
from tests.server.test_docs_codex import DOC_URL, blocks

# The config docs/codex.md gives, with the test's proxy for 127.0.0.1:8787.
NATIVE_BASE_URL = blocks("toml")[0].replace(DOC_URL, "{url}")


@pytest.fixture
def codex_native(npm_clients, proxy_settings, tmp_path, websockets_on):  # noqa: F811
    with codex_exec(npm_clients, dataclasses.replace(proxy_settings, websockets=websockets_on), tmp_path,
                    NATIVE_BASE_URL) as run:
        yield run


def _request_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]


def test_codex_cli_on_the_native_base_url_chains_a_tool_round_trip_over_the_socket(codex_native, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    result = codex_native('run it [[call:exec_command:{"cmd":"echo subrelay-native-ok"}]]')
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "The tool said:" in result.stdout and "subrelay-native-ok" in result.stdout
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("websocket session opened (/backend-api/codex/responses)") for m in messages), messages[-20:]
    lines = _request_lines(caplog)
    assert [m for m in lines if "method=WS" in m and "/backend-api/codex/responses" in m and "status=200" in m]
    assert not [m for m in lines if "method=POST" in m], lines  # no fallback to HTTP, no retries
    bodies = [r["body"] for r in mock_codex.state.requests]
    assert len(bodies) == 2 and "subrelay-native-ok" in json.dumps(bodies[1]["input"][-1])


@pytest.mark.parametrize("websockets_on", [False], ids=["websockets-off"])
def test_codex_cli_on_the_native_base_url_uses_http_there_when_websockets_are_off(codex_native, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    result = codex_native("say hi")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    lines = _request_lines(caplog)
    assert len([m for m in lines if "status=426" in m]) == 1, lines  # one refused upgrade, then HTTP at once
    assert [m for m in lines if "method=POST" in m and "/backend-api/codex/responses" in m and "status=200" in m]


def test_the_codex_cli_reads_the_access_token_login_subrelay_wrote(npm_clients, mock_codex, tmp_path):  # noqa: F811
    """``subrelay login --with-access-token`` and ``codex login --with-access-token`` share one auth.json:
    the real CLI, asking the mock's whoami, says it is logged in with that personal access token."""
    from tests.login.test_login import login_env

    token = mock_codex.state.issue_access_token()
    codex_home = tmp_path / "codex-home"
    env = login_env(mock_codex, str(codex_home / "auth.json"))
    saved = subprocess.run([sys.executable, "-m", "proxy", "login", "--with-access-token"], input=token,
                           capture_output=True, text=True, env=env, timeout=60)
    assert saved.returncode == 0, saved.stderr
    home = tmp_path / "home"
    home.mkdir()
    status = subprocess.run([npm_clients.bin("codex"), "login", "status"], capture_output=True, text=True, timeout=60,
                            env={**_isolated_env(home, npm_clients), "CODEX_HOME": str(codex_home),
                                 "CODEX_AUTHAPI_BASE_URL": f"{mock_codex.url}/api/accounts"},
                            stdin=subprocess.DEVNULL)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Logged in using personal access token" in status.stdout + status.stderr
    assert token not in status.stdout + status.stderr
