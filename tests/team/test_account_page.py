"""A team member's account page in headless Chromium: opened with their own key (what the browser sends
after its password prompt), it logs *them* in with a device code and shows their own limits and usage."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import httpx
import pytest

from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.browser import Browser, browser, chromium_or_skip  # noqa: F401 - browser: the shared page fixture
from tests.mock_upstream import ServerThread


def test_a_team_member_logs_in_on_the_account_page_and_sees_their_own_usage(browser, mock_codex, proxy_settings,
                                                                            tmp_path):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}

    async def make() -> str:
        team = open_team(env, create=True)
        try:
            bob_key.append((await add_user(team.store, "bob"))[1])
            return (await add_user(team.store, "lena", rpm=30, daily_tokens=500000, budgets={"month": 10}))[1]
        finally:
            await team.store.close()

    bob_key: list[str] = []
    key = asyncio.run(make())
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env=env)
    with ServerThread(create_app(settings)) as proxy:
        assert httpx.get(f"{proxy.url}/account").status_code == 401  # team mode: the page needs a key
        browser.command("Network.enable")
        basic = base64.b64encode(f"lena:{key}".encode()).decode()
        browser.command("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {basic}"})
        browser.goto(f"{proxy.url}/account")
        browser.wait_for("!!document.getElementById('not-connected')")
        assert "30 requests/min" in browser.evaluate("document.getElementById('own-limits').innerText")
        mock_codex.state.auth.email = "lena@example.com"
        browser.evaluate("document.getElementById('device-login').click()")
        code = browser.wait_for("document.getElementById('user-code') && document.getElementById('user-code').innerText")
        httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": code, "decision": "approve"})
        account = browser.wait_for("document.getElementById('account') && document.getElementById('account').innerText")
        assert "lena@example.com" in account
        for _ in range(3):
            answer = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30,
                                json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]},
                                headers={"authorization": f"Bearer {key}"})
            assert answer.status_code == 200
            assert mock_codex.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-lena-mock"
        bob = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {bob_key[0]}"},
                         json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
        assert bob.status_code >= 400  # bob has no login: refused, and in the ledger as bob's
        browser.evaluate("refresh()")
        browser.wait_for("document.querySelectorAll('#own-requests tr[data-seq]').length === 3")
        own = browser.evaluate("[...document.querySelectorAll('#own-requests tr[data-seq]')].map(r => r.innerText)")
        assert all("\t200\t" in row for row in own)  # lena's three answers; bob's refusal is not hers to see
        requests = browser.wait_for(
            "document.querySelector('#own-days tr[data-day] td:nth-child(2)') && "
            "document.querySelector('#own-days tr[data-day] td:nth-child(2)').innerText === '3' && '3'")
        assert requests == "3"
        # Her money: the plan's requests cost nothing; her budget on the team key is untouched.
        assert browser.evaluate("document.querySelector('.own-budget[data-budget=month]').innerText") == (
            "Budget $10.00 a month: $0.00 spent, $10.00 left")
        assert browser.evaluate("document.querySelector('#own-days tr[data-day] td:nth-child(6)').innerText") == "$0.00"
        # Only her own: never the server's provider table, the owner's login file or its state.
        page_text = browser.evaluate("document.body.innerText")
        assert "auth.json" not in page_text and "Providers" not in page_text
        shot = browser.screenshot("account-page-team-member.png")
        assert shot.stat().st_size > 5000
