"""Every example in docs/codex.md runs: its shell blocks against a running subrelay and the mock backend
(``subrelay`` is this checkout's CLI, ``127.0.0.1:8787`` the test's proxy), and its config block is the one
the real Codex CLI test uses (tests/clients/test_codex_native.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import orjson
from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.mock_upstream import ServerThread

DOC = Path(__file__).parents[2] / "docs" / "codex.md"
DOC_URL = "http://127.0.0.1:8787"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _run(block: str, url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    cli = f"{shlex.quote(sys.executable)} -m proxy"
    script = f'subrelay() {{ {cli} "$@"; }}\nset -eo pipefail\n' + block.replace(DOC_URL, url)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)


def _env(mock_codex, tmp_path, **extra) -> dict[str, str]:
    return {**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "auth.json"), "SUBRELAY_AUTH_BASE_URL": mock_codex.url,
            "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex", **extra}


def test_the_doc_has_the_examples_this_test_runs():
    assert len(blocks("bash")) == 3 and len(blocks("toml")) == 1


def test_the_native_path_and_owner_token_examples_run(mock_codex, proxy_settings, tmp_path):
    token = mock_codex.state.issue_access_token()
    env = _env(mock_codex, tmp_path, CODEX_ACCESS_TOKEN=token)
    settings = dataclasses.replace(proxy_settings, codex_auth_path=env["CODEX_AUTH_PATH"], auth_base_url=mock_codex.url)
    native, owner, _ = blocks("bash")
    login = _run(owner, "", env)  # stdin is not a terminal here: the printenv pipe is what is read
    assert login.returncode == 0, login.stdout + login.stderr
    assert "Logged in with a Codex access token" in login.stderr and "(Codex access token)" in login.stdout
    assert orjson.loads(Path(env["CODEX_AUTH_PATH"]).read_bytes()) == {"OPENAI_API_KEY": None,
                                                                     "personal_access_token": token}
    with ServerThread(create_app(settings)) as proxy:
        result = _run(native, proxy.url, env)
    assert result.returncode == 0, result.stdout + result.stderr
    counted, events = result.stdout.split()[0], result.stdout.split()[-1]
    assert int(counted) > 0 and int(events) > 3
    assert mock_codex.state.requests[-1]["headers"]["authorization"] == f"Bearer {token}"
    assert token not in result.stdout + result.stderr + login.stdout + login.stderr


def test_the_team_member_token_examples_run(mock_codex, proxy_settings, tmp_path):
    token = mock_codex.state.issue_access_token(account="acc-alice-pat")
    state = str(tmp_path / "state")

    async def add() -> str:
        team = open_team({"SUBRELAY_STATE_DIR": state}, create=True)
        try:
            return (await add_user(team.store, "alice"))[1]
        finally:
            await team.store.close()

    key = asyncio.run(add())
    env = _env(mock_codex, tmp_path, CODEX_ACCESS_TOKEN=token, SUBRELAY_STATE_DIR=state, SUBRELAY_KEY=key)
    settings = dataclasses.replace(proxy_settings, auth_base_url=mock_codex.url, env={"SUBRELAY_STATE_DIR": state})
    with ServerThread(create_app(settings)) as proxy:
        result = _run(blocks("bash")[2], proxy.url, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signs alice's requests only" in result.stderr and result.stdout.strip() == "access_token"
    assert token not in result.stdout + result.stderr
