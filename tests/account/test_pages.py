"""The browser parts of logging in, in a real headless Chromium: the browser login flow, and the
account page (a device login started from the page, approved on the mock, the account and usage
bars shown). A screenshot of the page is kept in tests/artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from proxy.server.app import create_app
from tests.browser import Browser, browser, chromium_or_skip  # noqa: F401 - browser: the shared page fixture
from tests.mock_upstream import ServerThread
from tests.server.test_cli import free_port
from tests.login.test_login import _read_url, login_env


def test_the_browser_login_in_chromium(browser, mock_codex, tmp_path):
    path = str(tmp_path / "auth.json")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--no-browser"], text=True,
                               env=login_env(mock_codex, path, port), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        browser.goto(_read_url(process))
        assert "ada@example.com" in browser.evaluate("document.body.innerText")
        browser.evaluate("document.getElementById('approve').click()")  # the mock's consent page
        browser.wait_for("location.href.includes('/auth/callback')")  # followed the redirect to the CLI
        assert "Signed in" in browser.wait_for("document.body && document.body.innerText")
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    assert os.path.exists(path)


def test_the_account_page_logs_in_with_a_device_code_and_shows_the_allowance(browser, mock_codex, proxy_settings):
    os.unlink(proxy_settings.codex_auth_path)
    from dataclasses import replace

    settings = replace(proxy_settings, auth_base_url=mock_codex.url)
    with ServerThread(create_app(settings)) as proxy:
        browser.goto(f"{proxy.url}/account")
        browser.wait_for("!!document.getElementById('not-connected')")
        assert "codex" in browser.evaluate("document.getElementById('providers').innerText")
        browser.evaluate("document.getElementById('device-login').click()")
        code = browser.wait_for("document.getElementById('user-code') && document.getElementById('user-code').innerText")
        approved = httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": code, "decision": "approve"})
        assert "approved" in approved.text
        account = browser.wait_for("document.getElementById('account') && document.getElementById('account').innerText")
        assert "ada@example.com" in account and "Pro plan" in account
        bars = browser.evaluate("[...document.querySelectorAll('.bar')].map(b => [b.dataset.window, b.firstChild.style.width])")
        assert bars == [["5-hour", "42%"], ["weekly", "17%"]]
        shot = browser.screenshot("account-page.png")
        assert shot.stat().st_size > 5000
        # The login landed where the running proxy reads it: it answers at once.
        assert httpx.post(f"{proxy.url}/v1/chat/completions",
                          json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200


def test_the_logged_out_page_is_calm_and_says_where_to_point_a_client(browser, tmp_path):
    """Nobody logged in, no keys: optional providers are grey 'not set up' with the line that sets
    each up (not error red), no literal backticks, and the base URL for a client."""
    from proxy.config.settings import Settings

    settings = Settings(codex_auth_path=str(tmp_path / "auth.json"), env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as proxy:
        browser.goto(f"{proxy.url}/account")
        browser.wait_for("!!document.getElementById('not-connected') && "
                         "document.querySelectorAll('#providers tr[data-provider]').length > 0")
        text = browser.evaluate("document.body.innerText")
        assert "`" not in text
        assert f"{proxy.url}/v1" in browser.evaluate("document.getElementById('openai-base').innerText")
        rows = browser.evaluate("Object.fromEntries([...document.querySelectorAll('#providers tr[data-provider]')]"
                                ".map(r => [r.dataset.provider, [r.cells[1].className, r.cells[1].innerText]]))")
        assert rows["openai"] == ["off", "not set up · export OPENAI_API_KEY=…"]
        assert rows["anthropic"] == ["off", "not set up · export ANTHROPIC_API_KEY=…"]
        assert rows["codex"][0] == "off" and "subrelay login" in rows["codex"][1]
        assert not browser.evaluate("document.querySelectorAll('#providers .bad').length")
        colour = browser.evaluate("getComputedStyle(document.querySelector('#providers td.off')).color")
        assert colour == "rgb(122, 128, 144)"  # grey, not the error red
        shot = browser.screenshot("account-page-logged-out.png")
        assert shot.stat().st_size > 5000
