"""docs/replicas.md's recipe, in its order, on a team that already has a login: `subrelay secret`, the two
variables, `migrate-state`, then replicas. Every stored login must still open on the replicas, a replica
with another key must not report ready, and `serve --host 0.0.0.0` is not refused when team mode's keys
guard it (issue 27 item 3)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest

from proxy.config.settings import Settings, check_bind_is_safe
from proxy.errors import ConfigError
from proxy.server.app import create_app
from proxy.server.cli import main
from proxy.team.context import open_team, store_configured
from proxy.team.logins import seal_login
from proxy.team.secretbox import new_secret
from tests.mock_upstream import ServerThread
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def redis_url():
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = RedisServer(password="recipe-password-1").start()
    yield server.url
    server.close()


def _cli(monkeypatch, capsys, env: dict[str, str], *argv: str) -> str:
    for name in ("SUBRELAY_REDIS_URL", "SUBRELAY_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_the_replica_recipe_keeps_every_login(tmp_path, monkeypatch, capsys, redis_url, mock_codex, proxy_settings):
    local = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    alice_key = json.loads(_cli(monkeypatch, capsys, local, "users", "add", "alice", "--json"))["key"]

    async def sign_alice_in() -> None:  # what `subrelay login --user alice` leaves: sealed with the key file
        team = open_team(local)
        await team.store.put_login("alice", seal_login(team, "alice", mock_codex.state.auth_file(), 1),
                                   expected_version=None)
        await team.close()

    asyncio.run(sign_alice_in())
    secret = _cli(monkeypatch, capsys, local, "secret").strip().split()[-1]  # step 1: a new key for the replicas
    remote = {**local, "SUBRELAY_REDIS_URL": redis_url, "SUBRELAY_SECRET_KEY": secret}
    said = _cli(monkeypatch, capsys, remote, "migrate-state", "--to", redis_url)
    assert "1 login(s)" in said and "re-sealed" in said and "cannot be opened" not in said

    # A replica elsewhere: the two variables only (its own empty state directory: no key file to fall back on).
    replica_env = {"SUBRELAY_STATE_DIR": str(tmp_path / "replica"), "SUBRELAY_REDIS_URL": redis_url,
                   "SUBRELAY_SECRET_KEY": secret}
    with ServerThread(create_app(dataclasses.replace(proxy_settings, env=replica_env))) as replica:
        assert httpx.get(f"{replica.url}/readyz", timeout=30).status_code == 200
        answer = httpx.post(f"{replica.url}/v1/chat/completions", json=CHAT, timeout=30,
                            headers={"Authorization": f"Bearer {alice_key}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]

    # A replica given another key is not ready, and says why (its log and /readyz), never "sign in again".
    wrong = {**replica_env, "SUBRELAY_SECRET_KEY": new_secret()}
    with ServerThread(create_app(dataclasses.replace(proxy_settings, env=wrong))) as replica:
        ready = httpx.get(f"{replica.url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["code"] == "secret_key_mismatch"

    # The recipe's last line: `serve --host 0.0.0.0` with no SUBRELAY_API_KEYS, team mode supplying keys.
    assert store_configured(replica_env)
    check_bind_is_safe(Settings(host="0.0.0.0"), team_mode=store_configured(replica_env))


async def test_a_store_from_before_the_key_check_is_judged_by_its_logins(tmp_path, mock_codex):
    """A store with logins but no key check (made before there was one): a server whose key opens none of
    them is not ready, instead of sealing a fresh check with its wrong key and reporting ready."""
    from proxy.team.key_check import KEY_CHECK, check_secret_key
    from proxy.team.users import add_user

    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    team = open_team(env, create=True)
    await add_user(team.store, "alice")
    await team.store.put_login("alice", seal_login(team, "alice", mock_codex.state.auth_file(), 1),
                               expected_version=None)
    other = open_team({**env, "SUBRELAY_SECRET_KEY": new_secret()})
    try:
        assert "does not open the logins" in await check_secret_key(other.store, other.box)
        assert await other.store.get_plan_windows(KEY_CHECK) is None  # nothing sealed with the wrong key
        assert await check_secret_key(team.store, team.box) is None
    finally:
        await other.close()
        await team.close()


def test_listening_beyond_loopback_without_any_key_is_refused_or_closed(proxy_settings, tmp_path):
    """Without team mode, 0.0.0.0 needs SUBRELAY_API_KEYS; with a team store but no user yet, the server
    that starts refuses every keyless request (it never serves anonymously beyond loopback)."""
    with pytest.raises(ConfigError, match="SUBRELAY_API_KEYS"):
        check_bind_is_safe(Settings(host="0.0.0.0"), team_mode=False)
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state"), "SUBRELAY_ALLOWED_HOSTS": "127.0.0.1"}
    exposed = dataclasses.replace(proxy_settings, host="0.0.0.0", allowed_hosts=("127.0.0.1",), env=env)
    with ServerThread(create_app(exposed)) as server:  # (the test server itself listens on loopback)
        refused = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=30)
        health = httpx.get(f"{server.url}/healthz", timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "no_client_keys"
    assert health.status_code == 200
