"""Sessions and the sign-in's guards without a browser: cookie attributes, a callback that does not
belong to a sign-in this browser started, revocation by an admin on the next request."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx

from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig, OidcConfig
from proxy.identity import sessions
from proxy.server.app import create_app
from proxy.team.context import open_team
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user


def test_the_session_cookie_is_httponly_lax_and_secure_with_the_host_prefix_over_tls():
    assert sessions.set_cookie("t", tls=False, max_age=60) == \
        "subrelay_session=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    tls = sessions.set_cookie("t", tls=True, max_age=60)
    assert tls.startswith("__Host-subrelay_session=t; Path=/;") and tls.endswith("; Secure")
    assert sessions.token_from(b"a=b; __Host-subrelay_session=tok") == "tok"


def _settings(proxy_settings, tmp_path):
    identity = IdentityConfig(oidc=OidcConfig(issuer="http://127.0.0.1:9", client_id="c"))  # never reached here
    return replace(proxy_settings, admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")},
                   file=FileConfig(identity=identity))


def test_a_callback_for_no_sign_in_of_this_browser_is_refused(proxy_settings, tmp_path):
    with ServerThread(create_app(_settings(proxy_settings, tmp_path))) as proxy:
        for query in ("state=made-up&code=x", "error=access_denied&error_description=no", "state=s&code=x&iss=https://evil"):
            answer = httpx.get(f"{proxy.url}/auth/oidc/callback?{query}")
            assert answer.status_code == 401 and "set-cookie" not in answer.headers, query
        assert httpx.get(f"{proxy.url}/auth/oidc/login?next=https://evil.example").status_code == 400


def _signed_in(env, user: str) -> str:
    """A session as the callback makes one (the provider itself is tested in Chromium)."""

    async def sign_in() -> str:
        team = open_team(env)
        try:
            return (await sessions.start(team.store, identity=f"sso:{user}", admin=False, user=user, hours=1))[0]
        finally:
            await team.store.close()

    return asyncio.run(sign_in())


def test_a_disabled_members_session_is_refused_on_its_next_request(proxy_settings, tmp_path):
    settings = _settings(proxy_settings, tmp_path)
    make_user(settings.env, "lena")
    cookie = {"subrelay_session": _signed_in(settings.env, "lena")}
    with ServerThread(create_app(settings)) as proxy:
        assert httpx.get(f"{proxy.url}/api/account/keys", cookies=cookie).status_code == 200
        assert httpx.patch(f"{proxy.url}/api/admin/users/lena", json={"disabled": True},
                           headers={"x-admin-key": ADMIN_KEY}).status_code == 200
        refused = httpx.get(f"{proxy.url}/api/account/keys", cookies=cookie)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "member_disabled"


def test_an_admin_revokes_a_members_sessions_and_their_next_request_is_refused(proxy_settings, tmp_path):
    settings = _settings(proxy_settings, tmp_path)
    make_user(settings.env, "lena")
    token = _signed_in(settings.env, "lena")
    with ServerThread(create_app(settings)) as proxy:
        cookie = {"subrelay_session": token}
        who = httpx.get(f"{proxy.url}/auth/session", cookies=cookie).json()
        assert who["user"] == "lena" and who["csrf_token"]
        assert httpx.get(f"{proxy.url}/api/account/keys", cookies=cookie).status_code == 200
        revoked = httpx.delete(f"{proxy.url}/api/admin/users/lena/sessions", headers={"x-admin-key": ADMIN_KEY})
        assert revoked.json()["deleted"] == 1
        assert httpx.get(f"{proxy.url}/api/account/keys", cookies=cookie).status_code == 401
        assert httpx.get(f"{proxy.url}/auth/session", cookies=cookie).json()["signed_in"] is False
