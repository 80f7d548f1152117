"""The request ledger and the audit log end to end: requests through the real server land in the ledger
with their routing decision, the admin API pages and filters them, a CSV export verifies with
``subrelay ledger verify`` (and an edited one does not), members see only their own requests, and admin
changes made through the API, the page's calls and the CLI all appear in the audit log."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from proxy.server.cli import main as subrelay
from tests.team.conftest import ask

TURN = [{"role": "user", "content": "the secret plan is tangerine"}]


def _ask(base: str, key: str, user_agent: str = "OpenAI/Python 2.8.0") -> httpx.Response:
    return ask(base, key, TURN, user_agent)


def test_requests_land_in_the_ledger_with_their_routing_decision_and_page_with_filters(ledger_team, caplog):
    base, admin, keys, upstream = ledger_team
    caplog.set_level(logging.INFO, logger="subrelay.requests")
    assert _ask(base, keys["alice"], "codex_cli_rs/0.61.0 (Linux; x86_64)").status_code == 200
    upstream.state.script.append({"status": 429, "body": {"error": {"message": "slow down", "type": "rate_limit"}}})
    fell_back = _ask(base, keys["alice"])
    assert fell_back.status_code == 200 and fell_back.headers["x-subrelay-route"] == "backup/gpt-x"
    assert _ask(base, keys["bob"]).status_code == 200

    page = admin.get("/api/admin/requests").json()
    newest = page["data"]
    assert [e["person"] for e in newest] == ["bob", "alice", "alice"]
    fallback = newest[1]
    assert fallback["route"] == "backup/gpt-x" and fallback["provider"] == "backup"
    assert fallback["decision"] == "fallback primary/gpt-x (429) -> backup/gpt-x"
    assert (fallback["model"], fallback["upstream_model"], fallback["door"]) == ("primary/gpt-x", "gpt-x", "chat")
    assert (fallback["status"], fallback["input_tokens"], fallback["output_tokens"]) == (200, 5, 3)
    assert (fallback["client"], fallback["client_version"]) == ("OpenAI/Python", "2.8.0")
    assert (newest[2]["client"], newest[2]["client_version"], newest[2]["decision"]) == ("codex_cli_rs", "0.61.0", None)
    assert newest[2]["total_ms"] >= 0 and newest[2]["request_id"]
    assert "tangerine" not in orjson.dumps(page).decode()  # never content

    alice = admin.get("/api/admin/requests", params={"person": "alice", "limit": 1}).json()
    assert [e["seq"] for e in alice["data"]] == [fallback["seq"]] and alice["next_cursor"]
    older = admin.get("/api/admin/requests", params={"person": "alice", "limit": 1, "cursor": alice["next_cursor"]})
    assert [e["seq"] for e in older.json()["data"]] == [newest[2]["seq"]] and older.json()["next_cursor"] is None
    assert [e["person"] for e in admin.get("/api/admin/requests", params={"provider": "backup"}).json()["data"]] == ["alice"]
    refused = admin.get("/api/admin/requests", params={"status": "teapot"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "status"
    assert admin.get("/api/admin/requests", params={"colour": "red"}).json()["error"]["code"] == "unknown_parameter"
    assert httpx.get(f"{base}/api/admin/requests", timeout=10).status_code == 401  # the admin key is required

    lines = [r.fields for r in caplog.records if getattr(r, "fields", None) and r.fields.get("route") == "backup/gpt-x"]
    assert lines and lines[0]["person"] == "alice" and "cost" in lines[0]  # item 6: person, route and cost
    assert keys["alice"] not in caplog.text


def test_a_csv_export_verifies_and_an_edited_one_fails(ledger_team, tmp_path, capsys):
    base, admin, keys, _ = ledger_team
    for name in ("alice", "bob", "alice"):
        assert _ask(base, keys[name]).status_code == 200
    export = admin.get("/api/admin/requests", params={"format": "csv"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    path = tmp_path / "requests.csv"
    path.write_text(export.text)
    assert subrelay(["ledger", "verify", str(path)]) == 0
    assert "OK: 3 entries" in capsys.readouterr().out

    edited = export.text.splitlines()
    edited[2] = edited[2].replace(",5,", ",50,", 1)  # a spreadsheet "fix" of one request's input tokens
    path.write_text("\n".join(edited) + "\n")
    assert subrelay(["ledger", "verify", str(path)]) == 1
    assert "was edited" in capsys.readouterr().out

    dropped = export.text.splitlines()
    del dropped[2]
    path.write_text("\n".join(dropped) + "\n")
    assert subrelay(["ledger", "verify", str(path)]) == 1
    assert "missing" in capsys.readouterr().out

    jsonl = admin.get("/api/admin/requests", params={"format": "jsonl", "person": "alice"}).text
    path.write_text(jsonl)
    assert len(jsonl.splitlines()) == 2
    assert subrelay(["ledger", "verify", "--filtered", str(path)]) == 0
    assert subrelay(["ledger", "verify"]) == 0  # the store's own chains
    out = capsys.readouterr().out
    assert "requests: OK: 3 entries" in out and "audit: OK" in out
    assert subrelay(["requests", "--person", "bob"]) == 0
    assert "bob" in capsys.readouterr().out


def test_a_member_sees_their_own_requests_and_never_anothers(ledger_team):
    base, admin, keys, _ = ledger_team
    assert _ask(base, keys["alice"]).status_code == 200
    assert _ask(base, keys["bob"]).status_code == 200
    own = httpx.get(f"{base}/api/llm/requests", headers={"authorization": f"Bearer {keys['alice']}"}, timeout=10)
    assert own.status_code == 200 and [e["person"] for e in own.json()["data"]] == ["alice"]
    other = httpx.get(f"{base}/api/llm/requests", params={"person": "bob"}, timeout=10,
                      headers={"authorization": f"Bearer {keys['alice']}"})
    assert other.status_code == 403 and "bob" not in other.text
    assert httpx.get(f"{base}/api/llm/requests", timeout=10).status_code == 401
    for path in ("/api/admin/requests", "/api/admin/audit"):  # a member's key is not the admin key
        refused = httpx.get(f"{base}{path}", headers={"authorization": f"Bearer {keys['alice']}"}, timeout=10)
        assert refused.status_code in (401, 403) and "bob" not in refused.text


def test_a_disable_a_rotation_and_a_limit_change_through_three_surfaces_are_audited(ledger_team, capsys):
    base, admin, keys, _ = ledger_team
    assert admin.patch("/api/admin/users/bob", json={"disabled": True}).status_code == 200
    page_call = admin.post("/api/admin/users/alice/rotate-key", json={}, headers={"x-subrelay-surface": "admin-page"})
    assert page_call.status_code == 200
    assert subrelay(["users", "set", "alice", "--rpm", "120", "--daily-tokens", "500000"]) == 0
    capsys.readouterr()

    entries = admin.get("/api/admin/audit").json()["data"]
    assert [(e["action"], e["target"], e["via"]) for e in entries[:3]] == [
        ("user.change", "alice", "cli"), ("user.rotate_key", "alice", "page"), ("user.disable", "bob", "api")]
    change, rotation, disable = entries[:3]
    assert change["details"] == "rpm: none -> 120; daily_tokens: none -> 500000"
    assert change["actor"].startswith("local user ")
    assert rotation["actor"] == disable["actor"] == "admin key from 127.0.0.1"
    assert rotation["details"].startswith("new key id ") and page_call.json()["key"] not in orjson.dumps(entries).decode()
    assert disable["details"] == "disabled: false -> true"
    assert [e["action"] for e in entries[3:]] == ["user.add", "user.add"]
    assert subrelay(["audit", "--action", "user.disable"]) == 0
    assert "bob" in capsys.readouterr().out
    export = admin.get("/api/admin/audit", params={"format": "jsonl"}).text
    assert len(export.splitlines()) == 5 and '"log":"audit"' in export


@pytest.mark.parametrize("extra_env", [{"SUBRELAY_LEDGER": "off"}])
def test_an_owner_who_opts_out_records_no_request_but_still_audits_admins(ledger_team, state_dir):
    base, admin, keys, _ = ledger_team
    assert _ask(base, keys["alice"]).status_code == 200
    assert admin.patch("/api/admin/users/bob", json={"rpm": 10}).status_code == 200
    assert admin.get("/api/admin/requests").json()["data"] == []
    assert [e["action"] for e in admin.get("/api/admin/audit").json()["data"]][0] == "user.change"


@pytest.mark.parametrize("env", [{"SUBRELAY_LEDGER": "maybe"}, {"SUBRELAY_LEDGER_DAYS": "-3"},
                                 {"SUBRELAY_LEDGER_MAX_ENTRIES": "lots"}])
def test_a_malformed_ledger_setting_stops_start_up_with_the_fix(proxy_settings, env):
    from dataclasses import replace

    from proxy.errors import ConfigError
    from proxy.server.app import create_app

    with pytest.raises(ConfigError, match=next(iter(env))):
        create_app(replace(proxy_settings, env=env))
