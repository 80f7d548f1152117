"""One ChatGPT account, one person: a second member linking an account someone here already linked is
refused, naming OpenAI's rule; the same person's second user may, with shared_account = "warn"."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace

import httpx

from proxy.account.api import PREFIX
from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig
from proxy.identity.people import belongs_to, link
from proxy.server.app import create_app
from proxy.team.context import open_team
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user, post


def _link(base: str, key: str, mock_codex, email: str) -> httpx.Response:
    """A device login as ``email``, polled until it ends: the last answer (connected, or the refusal)."""
    start = post(f"{base}{PREFIX}/device/start", key).json()
    mock_codex.state.auth.email = email
    httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": start["user_code"], "decision": "approve"})
    deadline = time.monotonic() + 15
    while True:
        answer = post(f"{base}{PREFIX}/device/poll", key, {"device_code": start["device_code"]})
        if answer.status_code != 200 or answer.json().get("connected"):
            return answer
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.3)


def _settings(proxy_settings, mock_codex, tmp_path, **identity):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    return replace(proxy_settings, auth_base_url=mock_codex.url, env=env, admin_key=ADMIN_KEY,
                   file=FileConfig(identity=IdentityConfig(**identity)))


def test_a_second_member_linking_the_same_chatgpt_account_is_refused(proxy_settings, mock_codex, tmp_path):
    settings = _settings(proxy_settings, mock_codex, tmp_path)
    alice, bob = make_user(settings.env, "alice"), make_user(settings.env, "bob")
    with ServerThread(create_app(settings)) as proxy:
        assert _link(proxy.url, alice, mock_codex, "shared@example.test").json()["connected"]
        refused = _link(proxy.url, bob, mock_codex, "shared@example.test")
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "chatgpt_account_in_use"
        assert "make your account available to anyone else" in error["message"] and "alice" not in error["message"]
        listed = httpx.get(f"{proxy.url}/api/admin/users", headers={"x-admin-key": ADMIN_KEY}).json()["data"]
        accounts = {view["name"]: (view["login"] or {}).get("account_id") for view in listed}
        assert accounts == {"alice": "acc-shared-mock", "bob": None}  # the admin sees each login's account
        # bob's own account is fine
        assert _link(proxy.url, bob, mock_codex, "bob@example.test").json()["connected"]


def test_the_owners_account_cannot_be_a_members_login(proxy_settings, mock_codex, tmp_path):
    settings = _settings(proxy_settings, mock_codex, tmp_path)
    bob = make_user(settings.env, "bob")
    with ServerThread(create_app(settings)) as proxy:  # the owner's auth.json is account acc-0000-mock
        refused = _link(proxy.url, bob, mock_codex, "0000@example.test")
        assert refused.status_code == 409 and "owner" in refused.json()["error"]["message"]


def test_the_same_person_may_link_their_account_to_their_second_user_when_configured(proxy_settings, mock_codex,
                                                                                       tmp_path):
    settings = _settings(proxy_settings, mock_codex, tmp_path, shared_account="warn")
    alice, work = make_user(settings.env, "alice"), make_user(settings.env, "alice-work")
    carol = make_user(settings.env, "carol")

    async def same_person() -> None:
        team = open_team(settings.env)
        try:
            await link(team.store, "email:alice@example.test", "alice")  # alice signs in as herself
            await belongs_to(team.store, "alice-work", "email:alice@example.test")  # and has a second user
        finally:
            await team.store.close()

    asyncio.run(same_person())
    with ServerThread(create_app(settings)) as proxy:
        assert _link(proxy.url, alice, mock_codex, "alice@example.test").json()["connected"]
        assert _link(proxy.url, work, mock_codex, "alice@example.test").json()["connected"]
        refused = _link(proxy.url, carol, mock_codex, "alice@example.test")  # another person: still refused
        assert refused.status_code == 409


def test_a_codex_access_token_for_an_account_another_member_linked_is_refused(proxy_settings, mock_codex, tmp_path):
    settings = _settings(proxy_settings, mock_codex, tmp_path)
    alice, bob = make_user(settings.env, "alice"), make_user(settings.env, "bob")
    token = mock_codex.state.issue_access_token(email="shared@example.test", account="acc-shared-mock")
    with ServerThread(create_app(settings)) as proxy:
        assert _link(proxy.url, alice, mock_codex, "shared@example.test").json()["connected"]
        refused = post(f"{proxy.url}{PREFIX}/access-token", bob, {"access_token": token})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "chatgpt_account_in_use"
        assert token not in refused.text
    listed = subprocess.run([sys.executable, "-m", "proxy", "users", "list"], capture_output=True, text=True,
                            env={**os.environ, **settings.env, "HOME": str(tmp_path)}, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "account acc-shared-mock" in listed.stdout  # `subrelay users list` names each login's account
