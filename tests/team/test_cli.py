"""``subrelay users``, ``usage``, ``backup``, ``secret`` and ``rotate-secret`` as an operator runs them:
the real command in a subprocess, with its own state directory."""

from __future__ import annotations

import os
import sqlite3

import orjson
import pytest

from proxy.state.team import StoredLogin, UsageRow
from proxy.team.secretbox import (
    KEY_FILE,
    SecretBox,
    SecretKeyError,
    load_keys,
    new_secret,
    parse_secret,
)
from tests.server.test_cli import run_cli
from tests.team.conftest import in_store


@pytest.fixture
def team_env(state_dir):
    return {"SUBRELAY_STATE_DIR": str(state_dir), "SUBRELAY_SECRET_KEY": "", "SUBRELAY_SECRET_KEY_PREVIOUS": "",
            "SUBRELAY_REDIS_URL": ""}


def subrelay(env, *args):
    return run_cli(*args, env=env)


def refused(result, *words: str) -> str:
    """The one line a refusal prints: exit 2, no traceback, the words that say what was wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("subrelay: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def add(env, name, *options) -> str:
    result = subrelay(env, "users", "add", name, *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_before_any_user_other_commands_say_how_to_start(team_env, state_dir):
    for args in (["users", "list"], ["users", "show", "alice"], ["users", "disable", "alice"], ["usage"],
                 ["backup", str(state_dir / "copy")], ["rotate-secret"]):
        refused(subrelay(team_env, *args), "no team store yet (run subrelay users add NAME)")
    assert not state_dir.exists()


def test_add_prints_the_key_once_as_the_last_line_and_list_never_shows_it(team_env, state_dir):
    key = add(team_env, "alice", "--models", "gpt-5*,claude-*", "--rpm", "10", "--daily-tokens", "100000",
              "--fallback")
    assert key.startswith("srk_") and " " not in key
    listed = subrelay(team_env, "users", "list")
    shown = subrelay(team_env, "users", "show", "alice")
    for result in (listed, shown):
        assert result.returncode == 0
        assert key not in result.stdout and key[4:20] not in result.stdout
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["name", "key", "id"]
    assert row.split()[:5] == ["alice", row.split()[1], "enabled", "gpt-5*,claude-*", "10"]
    assert len(row.split()[1]) == 12  # the key id only
    assert "100,000" in shown.stdout and "fallback      yes" in shown.stdout
    assert (state_dir / "team.sqlite3").stat().st_mode & 0o777 == 0o600
    assert (state_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600
    stored = b"".join(p.read_bytes() for p in state_dir.iterdir())
    assert key.encode() not in stored  # only its hash


def test_add_json_prints_the_name_and_key(team_env):
    result = subrelay(team_env, "users", "add", "bob", "--json", "--tpm", "5000")
    assert result.returncode == 0
    made = orjson.loads(result.stdout)
    assert (made["name"], made["tpm"], made["key"][:4]) == ("bob", 5000, "srk_")
    listed = orjson.loads(subrelay(team_env, "users", "list", "--json").stdout)
    assert [user["name"] for user in listed["data"]] == ["bob"] and made["key"] not in str(listed)


def test_disable_enable_rotate_set_and_remove(team_env):
    first = add(team_env, "alice")
    assert subrelay(team_env, "users", "disable", "alice").returncode == 0
    assert " disabled " in subrelay(team_env, "users", "list").stdout
    assert subrelay(team_env, "users", "enable", "alice").returncode == 0
    assert " enabled " in subrelay(team_env, "users", "list").stdout
    rotated = subrelay(team_env, "users", "rotate-key", "alice")
    second = rotated.stdout.strip().splitlines()[-1]
    assert rotated.returncode == 0 and second.startswith("srk_") and second != first
    changed = subrelay(team_env, "users", "set", "alice", "--rpm", "7", "--models", "none")
    assert changed.returncode == 0 and "rpm 7" in changed.stdout and "models all" in changed.stdout
    assert subrelay(team_env, "users", "remove", "alice").returncode == 0
    assert "No users yet" in subrelay(team_env, "users", "list").stdout
    refused(subrelay(team_env, "users", "remove", "alice"), "No user named 'alice'")


@pytest.mark.parametrize("args,words", [
    (["users", "add", "Alice"], ["'name'", "lowercase"]),
    (["users", "add", "-x-"], []),  # argparse: an option it does not know
    (["users", "add", "a b"], ["'name'"]),
    (["users", "add", "carol", "--rpm", "0"], ["'rpm'", "positive integer"]),
    (["users", "add", "carol", "--tpm", "-5"], ["'tpm'", "positive integer"]),
    (["users", "add", "carol", "--daily-tokens", "lots"], ["'daily_tokens'", "positive integer"]),
    (["users", "add", "carol", "--rpm", "1.5"], ["'rpm'", "positive integer"]),
    (["users", "add", "carol", "--models", "gpt 5"], ["'models'"]),
    (["users", "show", "nobody"], ["No user named 'nobody'"]),
    (["users", "disable", "nobody"], ["No user named 'nobody'"]),
    (["users", "rotate-key", "nobody"], ["No user named 'nobody'"]),
    (["users", "set", "alice"], ["nothing to change"]),
    (["users", "set", "alice", "--rpm", "0"], ["'rpm'"]),
    (["usage", "--since", "2026-13-40"], ["'since'", "YYYY-MM-DD"]),
    (["usage", "--since", "2026-12-02", "--until", "2026-12-01"], ["'since'"]),
    (["usage", "--user", "Bad Name"], ["'user'"]),
])
def test_bad_input_is_one_clear_line_and_exit_2(team_env, args, words):
    add(team_env, "alice")
    result = subrelay(team_env, *args)
    if words:
        refused(result, *words)
    else:
        assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line.split()[0] for line in subrelay(team_env, "users", "list").stdout.splitlines()[1:]] == ["alice"]


def test_a_malformed_secret_key_is_refused_before_any_store_is_made(team_env, state_dir):
    refused(subrelay({**team_env, "SUBRELAY_SECRET_KEY": "too-short"}, "users", "add", "alice"),
            "SUBRELAY_SECRET_KEY", "subrelay secret")
    assert not (state_dir / "team.sqlite3").exists()


def test_a_duplicate_user_is_refused_and_the_first_key_keeps_its_user(team_env, state_dir):
    add(team_env, "alice")
    refused(subrelay(team_env, "users", "add", "alice"), "A user named 'alice' exists already.")
    assert len(subrelay(team_env, "users", "list").stdout.splitlines()) == 2


def test_usage_is_a_table_per_user_day_model_and_provider(team_env, state_dir):
    add(team_env, "alice")
    add(team_env, "bob")

    async def record(store):
        person = {u.name: u.person for u in await store.list_users()}  # usage is kept per person
        await store.add_usage([
            UsageRow(person["alice"], "2026-11-30", "gpt-5.5", "codex", requests=2, input_tokens=1200, output_tokens=10),
            UsageRow(person["alice"], "2026-12-01", "gpt-5.5", "codex", requests=1, errors=1, cached_tokens=20,
                     reasoning_tokens=3),
            UsageRow(person["bob"], "2026-12-01", "claude-sonnet-4-5", "anthropic", requests=4, input_tokens=400,
                     cost_micros=1_200_000)])

    in_store(state_dir, record)
    table = subrelay(team_env, "usage").stdout.splitlines()
    assert table[0].split() == ["user", "day", "model", "provider", "requests", "errors", "input", "cached",
                                "output", "reasoning", "cost_usd", "unpriced"]
    assert table[1].split() == ["alice", "2026-11-30", "gpt-5.5", "codex", "2", "0", "1,200", "0", "10", "0", "0.00",
                                "0"]
    assert table[-1].split() == ["total", "7", "1", "1,600", "20", "10", "3", "1.20", "0"]
    only_bob = subrelay(team_env, "usage", "--user", "bob", "--json")
    assert [(row["model"], row["requests"]) for row in orjson.loads(only_bob.stdout)["data"]] == [
        ("claude-sonnet-4-5", 4)]
    one_day = subrelay(team_env, "usage", "--since", "2026-12-01").stdout
    assert "2026-11-30" not in one_day and "2026-12-01" in one_day
    assert "No usage" in subrelay(team_env, "usage", "--until", "2026-01-01").stdout


def test_backup_is_a_consistent_private_copy_and_never_overwrites(team_env, state_dir, tmp_path):
    add(team_env, "alice")
    add(team_env, "bob")
    target = tmp_path / "team-backup.sqlite3"
    result = subrelay(team_env, "backup", str(target))
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(target) as copy:
        assert [row[0] for row in copy.execute("SELECT name FROM users ORDER BY name")] == ["alice", "bob"]
    # The copy is a store subrelay can use as it is.
    restored = subrelay({**team_env, "SUBRELAY_STATE_DIR": str(tmp_path / "restored")}, "users", "list")
    assert restored.returncode == 2  # (nothing there yet)
    os.makedirs(tmp_path / "restored")
    os.replace(target, tmp_path / "restored" / "team.sqlite3")
    listed = subrelay({**team_env, "SUBRELAY_STATE_DIR": str(tmp_path / "restored")}, "users", "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["alice", "bob"]
    existing = tmp_path / "already-here"
    existing.write_text("precious")
    refused(subrelay(team_env, "backup", str(existing)), "exists already", "never overwrites")
    assert existing.read_text() == "precious"
    refused(subrelay(team_env, "backup", str(tmp_path / "no-such-dir" / "x")), "does not exist")


def test_secret_prints_a_usable_key(team_env):
    result = subrelay(team_env, "secret")
    assert result.returncode == 0
    value = result.stdout.strip()
    assert len(parse_secret(value)) == 32 and value != subrelay(team_env, "secret").stdout.strip()


def _log_in(state_dir, name: str, token: str, keys: list[bytes]):
    async def run(store):
        sealed = SecretBox(keys).seal(orjson.dumps({"access_token": token}), context=name)
        assert await store.put_login(name, StoredLogin(sealed, 1, account_id=f"acc-{name}"), expected_version=None)
    in_store(state_dir, run)


def _open(state_dir, name: str, keys: list[bytes]) -> dict:
    async def run(store):
        login = await store.get_login(name)
        return orjson.loads(SecretBox(keys).open(login.sealed, context=name)), login.version
    return in_store(state_dir, run)


def test_rotate_secret_with_a_key_file_reseals_every_login_and_keeps_only_the_new_key(team_env, state_dir):
    add(team_env, "alice")
    add(team_env, "bob")
    add(team_env, "carol")  # no login: nothing to re-seal
    old = load_keys({}, str(state_dir))
    _log_in(state_dir, "alice", "tok-alice", old)
    _log_in(state_dir, "bob", "tok-bob", old)
    result = subrelay(team_env, "rotate-secret")
    assert result.returncode == 0, result.stderr
    assert "Re-sealed 2 login(s)" in result.stdout and "Restart subrelay" in result.stdout
    new = load_keys({}, str(state_dir))
    assert len(new) == 1 and new != old
    assert _open(state_dir, "alice", new) == ({"access_token": "tok-alice"}, 2)
    assert _open(state_dir, "bob", new)[0] == {"access_token": "tok-bob"}
    with pytest.raises(SecretKeyError):
        _open(state_dir, "alice", old)
    assert (state_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_rotate_secret_with_the_environment_reseals_under_the_new_variable(team_env, state_dir):
    first, second = new_secret(), new_secret()
    env = {**team_env, "SUBRELAY_SECRET_KEY": first}
    add(env, "alice")
    _log_in(state_dir, "alice", "tok-alice", [parse_secret(first)])
    missing_previous = subrelay({**env, "SUBRELAY_SECRET_KEY": second}, "rotate-secret")
    refused(missing_previous, "alice", "SUBRELAY_SECRET_KEY_PREVIOUS")
    result = subrelay({**env, "SUBRELAY_SECRET_KEY": second, "SUBRELAY_SECRET_KEY_PREVIOUS": first}, "rotate-secret")
    assert result.returncode == 0, result.stderr
    assert "Re-sealed 1 login(s) under SUBRELAY_SECRET_KEY" in result.stdout
    assert "SUBRELAY_SECRET_KEY_PREVIOUS" in result.stdout
    assert _open(state_dir, "alice", [parse_secret(second)])[0] == {"access_token": "tok-alice"}
    assert not (state_dir / KEY_FILE).exists()  # the environment's key is never written to a file
