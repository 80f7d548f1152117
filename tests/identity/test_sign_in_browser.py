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
from tests.browser import Browser
from tests.identity.conftest import CLIENT_ID, CLIENT_SECRET, audit_log, free_port, running_provider
from tests.mock_upstream import ServerThread


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
        assert [(e["actor"], e["via"], e["action"], e["target"]) for e in audit_log(settings.env)] == [
            ("sso:ada <ada@example.test> from 127.0.0.1", "page", "user.disable", "bob")]
        # The page's own audit log (read with the session, not a key) names the signed-in admin.
        actor = browser.wait_for("(document.querySelector('#audit tr[data-action=\"user.disable\"]') || {}).innerText")
        assert "sso:ada <ada@example.test>" in actor and "page" in actor
        browser.evaluate("document.getElementById('audit').scrollIntoView()")
        browser.screenshot("sso-admin-audit-log.png")
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


def test_a_member_signs_in_links_their_login_makes_a_key_and_uses_it_from_openai_python(
        browser, oidc_node, proxy_settings, mock_codex, tmp_path):
    port = free_port()
    settings = _identity_settings(proxy_settings, mock_codex, tmp_path, f"http://127.0.0.1:{port}",
                                  create_members=True, member_domains=("example.test",))
    _in_store(settings.env, lambda store: add_user(store, "bob"))  # team mode is on: keys are required
    with ServerThread(create_app(settings)) as proxy, \
            running_provider(oidc_node, port, [f"{proxy.url}/auth/oidc/callback"], {}):
        browser.goto(f"{proxy.url}/account")
        browser.wait_for("!!document.getElementById('sso-sign-in')")
        browser.evaluate("document.getElementById('sso-sign-in').click()")
        _sign_in_at_provider(browser, "lena")
        browser.wait_for("location.pathname === '/account' && !!document.getElementById('not-connected')")
        assert "(user lena)" in browser.evaluate("document.getElementById('signed-in-as').innerText")
        mock_codex.state.auth.email = "lena@example.test"
        browser.evaluate("document.getElementById('device-login').click()")
        code = browser.wait_for("document.getElementById('user-code') && document.getElementById('user-code').innerText")
        httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": code, "decision": "approve"})
        assert "lena@example.test" in browser.wait_for(
            "document.getElementById('account') && document.getElementById('account').innerText")
        browser.evaluate("document.getElementById('key-name').value = 'laptop codex'; "
                         "document.getElementById('create-key').click()")
        key = browser.wait_for("document.getElementById('new-key-value').innerText")
        browser.wait_for("!!document.querySelector('#keys tr[data-key=\"laptop codex\"]')")
        browser.evaluate("document.getElementById('keys-section').scrollIntoView()")
        browser.screenshot("sso-member-account-with-a-key.png")
        client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        assert mock_codex.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-lena-mock"
        # Revoked on the page: the key stops working on its very next request.
        browser.evaluate("document.querySelector('#keys button[data-revoke]').click()")
        browser.wait_for("!document.querySelector('#keys tr[data-key]')")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    # The member's own changes are audited under their sign-in, on the account surface.
    assert [(e["actor"].split(" <")[0], e["via"], e["action"], e["target"]) for e in audit_log(settings.env)
            if e["action"].startswith("member_key.")] == [
        ("sso:lena", "account", "member_key.create", "lena"), ("sso:lena", "account", "member_key.revoke", "lena")]
