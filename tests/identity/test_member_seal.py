"""seal = "member": a member's ChatGPT login opens only inside that member's own request. A dump of the
store plus the server's secret key opens nothing (the test tries every key-like value in the dump);
the member's keys (the one they linked with, and ones they made afterwards) work; a key an admin
rotated in cannot open it (the mode's stated cost); an admin cannot link a member's login."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proxy.account.team_member import save_user_login
from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig
from proxy.errors import AuthenticationFailed
from proxy.server.app import create_app
from proxy.team import member_seal
from proxy.team.context import open_team
from proxy.team.secretbox import SecretBox, load_keys
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import device_login, make_user, post

HI = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


def _chat(base: str, key: str) -> httpx.Response:
    return post(f"{base}/v1/chat/completions", key, HI)


def _dump(path: str) -> dict[str, list[tuple]]:
    """Every row of every table of the store file: what a stolen backup holds."""
    db = sqlite3.connect(path)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: db.execute(f"SELECT * FROM {table}").fetchall() for table in tables}
    finally:
        db.close()


def _candidate_keys(dump: dict[str, list[tuple]]) -> list[bytes]:
    """Every 32-byte key an attacker could make from the dump: hex digests as bytes, and what the
    member-seal derivation makes of each string in it (a key hash is all the store keeps of a key)."""
    strings = {value for rows in dump.values() for row in rows for value in row if isinstance(value, str)}
    found = set()
    for text in strings:
        for part in text.replace(":", " ").split():
            found.add(member_seal.derive(part.encode()))
            if len(part) == 64:
                try:
                    found.add(bytes.fromhex(part))
                except ValueError:
                    pass
    return list(found)


def _opens(key: bytes, sealed: bytes, aad: bytes) -> bool:
    try:
        AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
        return True
    except (InvalidTag, ValueError):
        return False


def test_a_store_dump_and_the_secret_key_open_no_members_login_while_their_keys_work(proxy_settings, mock_codex,
                                                                                     tmp_path):
    state = tmp_path / "state"
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, admin_key=ADMIN_KEY,
                       env={"SUBRELAY_STATE_DIR": str(state)}, file=FileConfig(identity=IdentityConfig(seal="member")))
    key = make_user(settings.env, "lena")
    with ServerThread(create_app(settings)) as proxy:
        device_login(proxy.url, key, mock_codex, "lena@example.test")
        assert _chat(proxy.url, key).status_code == 200
        assert mock_codex.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-lena-mock"
        made = post(f"{proxy.url}/api/account/keys", key, {"name": "laptop", "expires_in_days": 30}).json()
        assert made["opens_login"] is True
        assert _chat(proxy.url, made["key"]).status_code == 200  # a key she made afterwards opens it too
        rotated = httpx.post(f"{proxy.url}/api/admin/users/lena/rotate-key", json={},
                             headers={"x-admin-key": ADMIN_KEY}).json()["key"]
        refused = _chat(proxy.url, rotated)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "login_sealed"
        assert _chat(proxy.url, made["key"]).status_code == 200  # her own key still does

    dump = _dump(str(state / "team.sqlite3"))
    box = SecretBox(load_keys({}, str(state)))  # the server's secret key, as a thief with both would use it
    (sealed,) = [row[1] for row in dump["logins"] if row[0] == "lena"]
    inner = box.open(sealed, context="lena")
    assert inner.startswith(member_seal.MARK) and b"token" not in inner  # the outer layer hides nothing more
    body = inner[len(member_seal.MARK):]
    wraps = [bytes(row[2]) for row in dump["records"] if row[0] == member_seal.WRAP]
    assert len(wraps) == 2  # the key she linked with, and the one she made
    for candidate in _candidate_keys(dump):
        assert not _opens(candidate, body, b"lena"), "a key made from the dump opened the login"
        assert not any(_opens(candidate, wrap, b"lena") for wrap in wraps), "a key from the dump unwrapped one"


def test_an_admin_cannot_link_a_members_login_when_logins_are_sealed_for_members(tmp_path, mock_codex):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    make_user(env, "lena")

    async def link_as_admin() -> None:
        team = open_team(env)
        team.seal = "member"
        try:
            await save_user_login(team, "lena", mock_codex.state.issue_tokens(email="lena@example.test"))
        finally:
            await team.store.close()

    with pytest.raises(AuthenticationFailed) as refused:
        asyncio.run(link_as_admin())
    assert refused.value.code == "member_seal_needs_member"


def test_a_members_codex_access_token_is_sealed_for_them_too(proxy_settings, mock_codex, tmp_path):
    """A personal access token (issue 26's other login) follows the same rule: only her requests open it."""
    state = tmp_path / "state"
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env={"SUBRELAY_STATE_DIR": str(state)},
                       file=FileConfig(identity=IdentityConfig(seal="member")))
    key = make_user(settings.env, "lena")
    token = mock_codex.state.issue_access_token(email="lena@example.test", account="acc-lena-pat")
    with ServerThread(create_app(settings)) as proxy:
        saved = post(f"{proxy.url}/api/llm/subscription/openai/access-token", key, {"access_token": token})
        assert saved.status_code == 200, saved.text
        assert _chat(proxy.url, key).status_code == 200
        assert mock_codex.state.requests[-1]["headers"]["authorization"] == f"Bearer {token}"
    dump = _dump(str(state / "team.sqlite3"))
    (sealed,) = [row[1] for row in dump["logins"] if row[0] == "lena"]
    inner = SecretBox(load_keys({}, str(state))).open(sealed, context="lena")
    assert inner.startswith(member_seal.MARK) and token.encode() not in inner
    for candidate in _candidate_keys(dump):
        assert not _opens(candidate, inner[len(member_seal.MARK):], b"lena")
