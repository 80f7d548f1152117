"""Single sign-on in headless Chromium against a real OpenID provider (oidc-provider on loopback): an
admin signs in and disables a member; a member signs in on /account, links their ChatGPT login with a
device code, makes a key there and uses it from openai-python. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import openai
import pytest

from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig, OidcConfig
from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.browser import Browser, chromium_or_skip
from tests.identity.conftest import CLIENT_ID, CLIENT_SECRET, free_port, running_provider
from tests.mock_upstream import ServerThread


@pytest.fixture
def browser():
    chromium_or_skip()
    session = Browser()
    try:
        yield session
    finally:
        session.close()


def _identity_settings(proxy_settings, mock_codex, tmp_path, issuer: str, **identity):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state"), "SUBRELAY_OIDC_CLIENT_SECRET": CLIENT_SECRET}
    config = IdentityConfig(oidc=OidcConfig(issuer=issuer, client_id=CLIENT_ID,
                                            scopes=("openid", "email", "profile", "groups")), **identity)
    return replace(proxy_settings, auth_base_url=mock_codex.url, env=env, file=FileConfig(identity=config))


def _sign_in_at_provider(browser: Browser, login: str) -> None:
    """The provider's development sign-in page, then its consent page."""
    browser.wait_for("!!document.querySelector('input[name=login]')")
    browser.evaluate(f"document.querySelector('input[name=login]').value = {login!r}; "
                     "document.querySelector('input[name=password]').value = 'any'; "
                     "document.querySelector('button[type=submit]').click()")
    browser.wait_for("location.pathname.startsWith('/interaction') && document.readyState === 'complete' && "
                     "!document.querySelector('input[name=login]') && !!document.querySelector('button[type=submit]')")
    browser.evaluate("document.querySelector('button[type=submit]').click()")


def _in_store(env, action):
    async def run():
        team = open_team(env, create=True)
        try:
            return await action(team.store)
        finally:
            await team.store.close()

    return asyncio.run(run())


def test_an_admin_signs_in_through_the_provider_and_disables_a_member(browser, oidc_node, proxy_settings,
                                                                      mock_codex, tmp_path):
    port = free_port()
    settings = _identity_settings(proxy_settings, mock_codex, tmp_path, f"http://127.0.0.1:{port}",
                                  admin_groups=("subrelay-admins",))
    _in_store(settings.env, lambda store: add_user(store, "bob"))
    with ServerThread(create_app(settings)) as proxy, \
            running_provider(oidc_node, port, [f"{proxy.url}/auth/oidc/callback"], {"ada": ["subrelay-admins"]}):
        assert httpx.get(f"{proxy.url}/api/admin/users").status_code in (401, 403)  # no key, no session
        browser.goto(f"{proxy.url}/admin")
        browser.wait_for("!document.getElementById('sso').hidden")
        browser.evaluate("document.getElementById('sso-sign-in').click()")
        _sign_in_at_provider(browser, "ada")
        browser.wait_for("location.pathname === '/admin' && !!document.querySelector('tr[data-user=bob]')")
        assert "sso:ada <ada@example.test>" in browser.evaluate("document.getElementById('signed-in-as').innerText")
        browser.evaluate("document.querySelector('tr[data-user=bob] button[data-action=toggle]').click()")
        browser.wait_for("document.querySelector('tr[data-user=bob] td.disabled') !== null")
        browser.screenshot("sso-admin-disabled-a-member.png")
        assert _in_store(settings.env, lambda store: store.get_user("bob")).disabled
        cookies = browser.command("Network.getAllCookies")["cookies"]
        session = next(c for c in cookies if c["name"] == "subrelay_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        # The cookie alone cannot change anything: a write without the page's CSRF token is refused.
        forged = httpx.patch(f"{proxy.url}/api/admin/users/bob", json={"disabled": False},
                             cookies={"subrelay_session": session["value"]})
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_token_invalid"
        # Signing out ends the session on the server: the same cookie reads nothing afterwards.
        browser.evaluate("document.getElementById('sso-sign-out').click()")
        browser.wait_for("!document.getElementById('sign-in').hidden")
        after = httpx.get(f"{proxy.url}/api/admin/users", cookies={"subrelay_session": session["value"]})
        assert after.status_code in (401, 403)
