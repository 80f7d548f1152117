"""Shared state in a directory others could write (issue 17, finding 9): such a directory stops start-up
with the fix named; links planted in it are never followed; files of another user are not used; and
when sharing is off for a file, the log says so."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import orjson
import pytest

from proxy.config.settings import Settings
from proxy.errors import ConfigError
from proxy.server.app import _response_store, create_app
from proxy.state.local import files
from proxy.state.local.cooldowns import SharedCooldowns
from proxy.state.local.files import check_state_dir, read_state_file
from proxy.state.local.responses import SharedResponseStore
from proxy.state.responses import ResponseStore

ROOT = os.geteuid() == 0
OTHER_UID = 4242


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    files._warned.clear()
    return path


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious")
    return path


def test_a_state_directory_others_can_write_stops_start_up_naming_the_fix(state_dir, proxy_settings):
    os.chmod(state_dir, 0o777)
    with pytest.raises(ConfigError, match="chmod 700"):
        check_state_dir(str(state_dir))
    settings = replace(proxy_settings, workers=2, env={"SUBRELAY_STATE_DIR": str(state_dir)})
    with pytest.raises(ConfigError, match="writable by other users"):
        create_app(settings)
    link = state_dir.parent / "link"
    os.chmod(state_dir, 0o700)
    link.symlink_to(state_dir)
    with pytest.raises(ConfigError, match="link"):
        check_state_dir(str(link))
    check_state_dir(str(state_dir))  # a private directory is fine


@pytest.mark.skipif(not ROOT, reason="needs root to give the directory to another user")
def test_a_state_directory_of_another_user_is_refused(state_dir):
    os.chown(state_dir, OTHER_UID, -1)
    with pytest.raises(ConfigError, match="belongs to uid 4242"):
        check_state_dir(str(state_dir))


def test_a_link_planted_at_the_cooldowns_file_is_replaced_not_written_through(state_dir, victim):
    (state_dir / "cooldowns.json").symlink_to(victim)
    SharedCooldowns(str(state_dir / "cooldowns.json")).note(("codex", "acc", "gpt-5.4"), 60)
    assert victim.read_text() == "precious"
    assert not (state_dir / "cooldowns.json").is_symlink()
    assert "codex" in (state_dir / "cooldowns.json").read_text()


def test_a_link_at_the_lock_file_turns_sharing_off_loudly(state_dir, victim, caplog):
    caplog.set_level(logging.WARNING)
    (state_dir / "cooldowns.json.lock").symlink_to(victim)
    SharedCooldowns(str(state_dir / "cooldowns.json")).note(("codex", "acc", "gpt-5.4"), 60)
    assert victim.read_text() == "precious"
    assert any("NOT sharing" in r.getMessage() and "cooldowns.json.lock" in r.getMessage() for r in caplog.records)


def test_a_planted_catalogue_link_is_not_read(state_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    planted = tmp_path / "planted.json"
    planted.write_bytes(orjson.dumps({"read_at": 1e12, "payload": {"models": [{"slug": "evil-model"}]}}))
    os.chmod(planted, 0o600)
    (state_dir / "catalog-codex.json").symlink_to(planted)
    assert read_state_file(str(state_dir / "catalog-codex.json")) is None
    assert any("NOT sharing" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not ROOT, reason="needs root to plant a file of another user")
def test_files_of_another_user_are_not_used(state_dir, caplog):
    caplog.set_level(logging.WARNING)
    for name in ("catalog-codex.json", "responses.sqlite3-wal"):
        path = state_dir / name
        path.write_bytes(b"{}")
        os.chmod(path, 0o666)
        os.chown(path, OTHER_UID, -1)
    assert read_state_file(str(state_dir / "catalog-codex.json")) is None
    settings = Settings(workers=2, env={"SUBRELAY_STATE_DIR": str(state_dir)})
    store = _response_store(settings)  # the -wal another user made would expose the conversations
    assert type(store) is ResponseStore
    assert any("NOT sharing" in r.getMessage() and "responses.sqlite3" in r.getMessage() for r in caplog.records)


def test_a_link_at_the_response_store_leaves_workers_starting_with_their_own(state_dir, victim, caplog):
    caplog.set_level(logging.WARNING)
    (state_dir / "responses.sqlite3").symlink_to(victim)
    store = _response_store(Settings(workers=2, env={"SUBRELAY_STATE_DIR": str(state_dir)}))
    assert type(store) is ResponseStore and victim.read_text() == "precious"
    assert any("NOT sharing" in r.getMessage() and "symbolic link" in r.getMessage() for r in caplog.records)


def test_an_own_store_file_open_to_others_is_narrowed(state_dir):
    path = state_dir / "responses.sqlite3"
    path.touch(mode=0o666)
    os.chmod(path, 0o666)
    SharedResponseStore(str(path)).put("resp_1", [{"role": "user", "content": "x"}], [], owner="anonymous")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(str(path) + suffix):
            assert os.stat(str(path) + suffix).st_mode & 0o077 == 0, suffix


def test_serve_with_workers_refuses_an_open_state_directory_before_binding(state_dir, auth_path):
    import subprocess
    import sys

    os.chmod(state_dir, 0o777)
    env = {**os.environ, "SUBRELAY_STATE_DIR": str(state_dir), "CODEX_AUTH_PATH": auth_path, "SUBRELAY_PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "proxy", "serve", "--workers", "2"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "SUBRELAY_STATE_DIR" in done.stderr and "chmod 700" in done.stderr and "listening" not in done.stderr
