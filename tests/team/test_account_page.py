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
from tests.browser import Browser, chromium_or_skip
from tests.mock_upstream import ServerThread


@pytest.fixture
def browser():
    chromium_or_skip()
    session = Browser()
    try:
        yield session
    finally:
        session.close()


def test_a_team_member_logs_in_on_the_account_page_and_sees_their_own_usage(browser, mock_codex, proxy_settings,
                                                                            tmp_path):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}

    async def make() -> str:
        team = open_team(env, create=True)
        try:
            await add_user(team.store, "bob")
            return (await add_user(team.store, "lena", rpm=30, daily_tokens=500000))[1]
        finally:
            await team.store.close()

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
        browser.evaluate("refresh()")
        requests = browser.wait_for(
            "document.querySelector('#own-days tr[data-day] td:nth-child(2)') && "
            "document.querySelector('#own-days tr[data-day] td:nth-child(2)').innerText === '3' && '3'")
        assert requests == "3"
        # Only her own: never the server's provider table, the owner's login file or its state.
        page_text = browser.evaluate("document.body.innerText")
        assert "auth.json" not in page_text and "Providers" not in page_text
        shot = browser.screenshot("account-page-team-member.png")
        assert shot.stat().st_size > 5000
