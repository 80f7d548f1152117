"""What a new team admin meets first (issue 27 item 5): the first `users add` says that every request now
needs a key and how to make an owner key; `--rpm abc` is refused in the command line's words; the admin
surface says "no admin key configured" apart from "wrong key"."""

from __future__ import annotations

import dataclasses

import httpx

from proxy.server.app import create_app
from proxy.server.cli import main
from tests.mock_upstream import ServerThread


def test_the_first_user_says_team_mode_is_on_and_a_bad_limit_says_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUBRELAY_STATE_DIR", str(tmp_path / "state"))
    assert main(["users", "add", "alice", "--rpm", "abc"]) == 2
    refused = capsys.readouterr().err
    assert "(or none for no limit)" in refused and "null" not in refused
    assert main(["users", "add", "alice"]) == 0
    first = capsys.readouterr().err
    assert "Team mode is on" in first and "SUBRELAY_API_KEYS" in first
    assert main(["users", "add", "bob"]) == 0
    assert "Team mode is on" not in capsys.readouterr().err  # said once


def test_the_admin_surface_tells_no_admin_key_from_a_wrong_one(tmp_path, monkeypatch, capsys, proxy_settings):
    state = str(tmp_path / "state")
    monkeypatch.setenv("SUBRELAY_STATE_DIR", state)
    assert main(["users", "add", "alice"]) == 0  # team mode: the edge asks for a key before the admin API
    capsys.readouterr()
    base = dataclasses.replace(proxy_settings, env={"SUBRELAY_STATE_DIR": state})
    with ServerThread(create_app(base)) as server:
        unset = httpx.get(f"{server.url}/api/admin/users", headers={"x-admin-key": "a" * 32}, timeout=30)
    with ServerThread(create_app(dataclasses.replace(base, admin_key="the-admin-key-0123456789"))) as server:
        wrong = httpx.get(f"{server.url}/api/admin/users", headers={"x-admin-key": "a" * 32}, timeout=30)
    assert unset.status_code in (401, 403) and "no admin key configured" in unset.json()["error"]["message"]
    assert wrong.status_code in (401, 403) and "no admin key configured" not in wrong.json()["error"]["message"]


def test_a_state_dir_set_after_the_team_was_made_says_so(tmp_path, monkeypatch, capsys, proxy_settings, caplog):
    """The team lives in ~/.subrelay; SUBRELAY_STATE_DIR later points elsewhere: the server warns at start."""
    import logging
    import os

    monkeypatch.delenv("SUBRELAY_STATE_DIR", raising=False)
    assert main(["users", "add", "alice"]) == 0  # into ~/.subrelay (this test's own HOME)
    capsys.readouterr()
    assert os.path.exists(os.path.expanduser("~/.subrelay/team.sqlite3"))
    elsewhere = dataclasses.replace(proxy_settings, env={"SUBRELAY_STATE_DIR": str(tmp_path / "elsewhere")})
    caplog.set_level(logging.WARNING)
    with ServerThread(create_app(elsewhere)):
        pass
    assert any("team mode is off" in record.getMessage() for record in caplog.records)
