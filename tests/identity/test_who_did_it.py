"""Every admin action names who made it in the audit log (issue 29's, read back from its store), as the edge
identified them: the admin key, the trusted header's person, the SSO subject (tests/identity/
test_sign_in_browser.py), the command line; a member's change to their own keys names the member."""

from __future__ import annotations

from dataclasses import replace

import httpx

from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig, TrustedHeaderConfig
from proxy.server.app import create_app
from tests.identity.conftest import audit_log
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user


def test_admin_actions_record_the_identity_that_made_them(proxy_settings, tmp_path):
    identity = IdentityConfig(trusted_header=TrustedHeaderConfig("x-forwarded-email", ("127.0.0.1",)),
                              admin_emails=("ada@example.test",))
    settings = replace(proxy_settings, admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")},
                       file=FileConfig(identity=identity))
    bob_key = make_user(settings.env, "bob")
    with ServerThread(create_app(settings)) as proxy:
        assert httpx.patch(f"{proxy.url}/api/admin/users/bob", json={"disabled": True},
                           headers={"x-forwarded-email": "ada@example.test"}).status_code == 200
        assert httpx.post(f"{proxy.url}/api/admin/users/bob/rotate-key", json={},
                          headers={"x-admin-key": ADMIN_KEY}).status_code == 200
        assert httpx.delete(f"{proxy.url}/api/admin/users/bob/sessions",
                            headers={"x-forwarded-email": "ada@example.test",
                                     "x-subrelay-surface": "admin-page"}).status_code == 200
        # A person the header names who is no admin changes nothing, and nothing is recorded for it.
        refused = httpx.patch(f"{proxy.url}/api/admin/users/bob", json={"disabled": False},
                              headers={"x-forwarded-email": "eve@example.test"})
        assert refused.status_code in (401, 403)
    entries = audit_log(settings.env)
    assert [(e["actor"], e["via"], e["action"], e["target"]) for e in entries] == [
        ("header:ada@example.test from 127.0.0.1", "api", "user.disable", "bob"),
        ("admin key from 127.0.0.1", "api", "user.rotate_key", "bob"),
        ("header:ada@example.test from 127.0.0.1", "page", "user.sessions_revoke", "bob")]
    assert entries[0]["details"] == "disabled: false -> true"
    assert bob_key not in str(entries)
