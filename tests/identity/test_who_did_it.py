"""Every admin action names who made it, as the edge identified them: the admin key, the trusted
header's person, or the command line; the audit log attaches to proxy.team.audit."""

from __future__ import annotations

from dataclasses import replace

import httpx

from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig, TrustedHeaderConfig
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user


def test_admin_actions_record_the_identity_that_made_them(proxy_settings, tmp_path, recorded):
    identity = IdentityConfig(trusted_header=TrustedHeaderConfig("x-forwarded-email", ("127.0.0.1",)),
                              admin_emails=("ada@example.test",))
    settings = replace(proxy_settings, admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")},
                       file=FileConfig(identity=identity))
    make_user(settings.env, "bob")
    with ServerThread(create_app(settings)) as proxy:
        assert httpx.patch(f"{proxy.url}/api/admin/users/bob", json={"disabled": True},
                           headers={"x-forwarded-email": "ada@example.test"}).status_code == 200
        assert httpx.post(f"{proxy.url}/api/admin/users/bob/rotate-key", json={},
                          headers={"x-admin-key": ADMIN_KEY}).status_code == 200
    assert [(e.actor, e.action, e.target) for e in recorded] == [
        ("header:ada@example.test", "user.change", "bob"), ("admin key", "user.rotate_key", "bob")]
    assert recorded[0].detail == {"disabled": True} and "key" not in recorded[1].detail
