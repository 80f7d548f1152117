"""Team mode with ``subrelay serve --workers 2``: a key disabled, rotated or removed with the
``subrelay users`` command is refused on its very next request, whichever worker takes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.server.test_cli import free_port
from tests.server.test_service import _workers_seen

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}


def users(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "proxy", "users", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture
def team_workers(mock_codex, auth_path, tmp_path):
    env = {**os.environ, "CODEX_AUTH_PATH": auth_path, "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex",
           "SUBRELAY_AUTH_BASE_URL": mock_codex.url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "SUBRELAY_CODEX_CATALOG_SECONDS": "3600", "SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    os.mkdir(tmp_path / "metrics")
    os.mkdir(tmp_path / "state", 0o700)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port), "--workers", "2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while len(_workers_seen(url, 6)) < 2:
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
        time.sleep(0.2)
    yield url, env
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def _statuses(url: str, key: str, count: int = 6) -> set[int]:
    """Statuses of ``count`` requests, each on a new connection (so both workers take some)."""
    return {httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30,
                       headers={"authorization": f"Bearer {key}", "connection": "close"}).status_code
            for _ in range(count)}


def test_a_revoked_key_is_refused_on_the_next_request_on_every_worker(team_workers, mock_codex):
    url, env = team_workers
    key = users(env, "add", "jo")
    other = users(env, "add", "kim")
    # jo's login: the admin logs jo in (the owner's file is copied in as jo's, for this test's sake).
    import asyncio

    from proxy.account.team_member import save_user_login
    from proxy.team.context import open_team

    async def give_login() -> None:
        team = open_team(env)
        tokens = mock_codex.state.issue_tokens(email="jo@example.com", account="acc-jo-mock")
        await save_user_login(team, "jo", tokens)
        await team.store.close()

    asyncio.run(give_login())
    assert _statuses(url, key) == {200}
    users(env, "disable", "jo")
    assert _statuses(url, key) == {401}  # the very next requests, on both workers
    users(env, "enable", "jo")
    assert _statuses(url, key) == {200}
    new_key = users(env, "rotate-key", "jo")
    assert _statuses(url, key) == {401} and _statuses(url, new_key) == {200}
    users(env, "remove", "jo")
    assert _statuses(url, new_key) == {401}
    assert _statuses(url, other) == {401}  # kim never logged in: refused, never signed with anyone's login
