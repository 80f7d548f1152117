"""The real Codex CLI in team mode: each person's CLI sends with their own subrelay key, and each
request reaches the Codex backend signed with that person's own ChatGPT login (issue 19)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess

import pytest

from proxy.server.app import create_app
from proxy.account.team_member import save_user_login
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.clients.test_npm_clients import (  # noqa: F401 (npm_clients is a fixture)
    CODEX_BASE_URL,
    CODEX_PROVIDER_BLOCK,
    _isolated_env,
    npm_clients,
)
from tests.mock_upstream import ServerThread


def _user_with_login(env: dict, mock_codex, name: str) -> str:
    async def run() -> str:
        team = open_team(env, create=True)
        try:
            _, key = await add_user(team.store, name)
            tokens = mock_codex.state.issue_tokens(email=f"{name}@example.com", account=f"acc-{name}-mock")
            await save_user_login(team, name, tokens)
            return key
        finally:
            await team.store.close()

    return asyncio.run(run())


@pytest.mark.parametrize("config", [CODEX_PROVIDER_BLOCK, CODEX_BASE_URL], ids=["provider-block", "openai_base_url"])
def test_each_persons_codex_cli_is_signed_with_their_own_login(npm_clients, proxy_settings, mock_codex, tmp_path,  # noqa: F811
                                                               config):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    keys = {name: _user_with_login(env, mock_codex, name) for name in ("alice", "bob")}
    with ServerThread(create_app(dataclasses.replace(proxy_settings, env=env))) as proxy:
        for name, key in keys.items():
            home, codex_home, workdir = (tmp_path / name / part for part in ("home", "codex-home", "work"))
            for folder in (home, codex_home, workdir):
                folder.mkdir(parents=True)
            (codex_home / "config.toml").write_text(config.format(url=proxy.url))
            run_env = {**_isolated_env(home, npm_clients), "CODEX_HOME": str(codex_home), "SUBRELAY_API_KEY": key,
                       "CODEX_API_KEY": key, "OPENAI_API_KEY": key}
            mock_codex.state.requests.clear()
            result = subprocess.run([npm_clients.bin("codex"), "exec", "--skip-git-repo-check", f"hi from {name}"],
                                    capture_output=True, text=True, timeout=180, env=run_env, cwd=workdir,
                                    stdin=subprocess.DEVNULL)
            assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
            assert f"You said: hi from {name}" in result.stdout
            accounts = {r["headers"].get("chatgpt-account-id") for r in mock_codex.state.requests}
            assert accounts == {f"acc-{name}-mock"}  # only this person's own login signed their turn
