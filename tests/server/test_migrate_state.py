"""``subrelay migrate-state --to redis://…``: a team that outgrows one host copies its store into Redis
and every key, login and usage figure is there for the replicas."""

from __future__ import annotations

import asyncio
import json

import pytest

from proxy.server.cli import main
from proxy.state.local.team import SqliteTeamStore
from proxy.state.team import StoredLogin, UsageRow
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer


@pytest.fixture
def redis_url():
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = RedisServer(password="migrate-password-1").start()
    yield server.url
    server.close()


def _run(monkeypatch, capsys, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    for name in ("SUBRELAY_REDIS_URL", "SUBRELAY_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_local_store_is_copied_into_redis_and_the_keys_keep_working(tmp_path, monkeypatch, capsys, redis_url):
    local = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    code, out, _ = _run(monkeypatch, capsys, local, "users", "add", "alice", "--rpm", "5", "--json")
    assert code == 0
    alice_key = json.loads(out)["key"]
    assert _run(monkeypatch, capsys, local, "users", "add", "bob")[0] == 0

    async def seed() -> None:
        store = SqliteTeamStore(str(tmp_path / "state" / "team.sqlite3"))
        await store.put_login("alice", StoredLogin("v1.abcd1234.sealed", 3, email="a@example.com"),
                              expected_version=None)
        await store.add_usage([UsageRow("alice", "2026-12-01", "gpt-5.5", "codex", requests=4, input_tokens=40)])
        await store.put_plan_windows("account:a", {"primary_used_percent": 12.0})
        await store.close()

    asyncio.run(seed())
    code, out, err = _run(monkeypatch, capsys, local, "migrate-state", "--to", redis_url)
    assert code == 0, err
    assert "2 user(s), 1 login(s), 1 usage row(s) and 1 plan window(s)" in out
    assert "migrate-password-1" not in out + err
    assert "abcd1234" in out and "SUBRELAY_SECRET_KEY" in out  # which key opens the copied logins

    remote = {**local, "SUBRELAY_REDIS_URL": redis_url}
    code, out, _ = _run(monkeypatch, capsys, remote, "users", "list", "--json")
    assert code == 0 and [u["name"] for u in json.loads(out)["data"]] == ["alice", "bob"]
    code, out, _ = _run(monkeypatch, capsys, remote, "usage", "--json")
    assert code == 0 and "gpt-5.5" in out

    async def check() -> None:
        from proxy.state.redis.team import RedisTeamStore
        from proxy.team.keys import hash_key

        store = RedisTeamStore.from_url(redis_url, {})
        assert (await store.user_by_key_hash(hash_key(alice_key.encode()))).name == "alice"
        assert (await store.get_login("alice")).version == 3
        assert (await store.get_plan_windows("account:a"))["primary_used_percent"] == 12.0
        await store.close()

    asyncio.run(check())
    code, _, err = _run(monkeypatch, capsys, local, "migrate-state", "--to", redis_url)  # twice: no double usage
    assert code == 2 and "empty store only" in err


def test_nothing_to_migrate_and_a_bad_url_are_one_line_refusals(tmp_path, monkeypatch, capsys):
    local = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    code, _, err = _run(monkeypatch, capsys, local, "migrate-state", "--to", "redis://127.0.0.1:1/0")
    assert code == 2 and "no local team store" in err
    assert _run(monkeypatch, capsys, local, "users", "add", "carol")[0] == 0
    code, _, err = _run(monkeypatch, capsys, local, "migrate-state", "--to", "http://example.com")
    assert code == 2 and "redis://" in err and "Traceback" not in err
