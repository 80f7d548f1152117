"""Trusted-header mode (behind oauth2-proxy, Pomerium, Cloudflare Access): the configured header names
the person, but only on requests from the configured proxy addresses; from anywhere else it is refused."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from proxy.account.api import PREFIX
from proxy.config.file import FileConfig
from proxy.config.identity import IdentityConfig, TrustedHeaderConfig
from proxy.identity.people import link
from proxy.server.app import create_app
from proxy.team.context import open_team
from tests.mock_upstream import ServerThread
from tests.team.test_request_path import make_user

HEADER = "x-forwarded-email"


def _settings(proxy_settings, tmp_path, proxies: tuple[str, ...]):
    identity = IdentityConfig(trusted_header=TrustedHeaderConfig(HEADER, proxies),
                              admin_emails=("ada@example.test",))
    return replace(proxy_settings, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")},
                   file=FileConfig(identity=identity))


def _link_lena(env) -> str:
    key = make_user(env, "lena")

    async def run() -> None:
        team = open_team(env)
        try:
            await link(team.store, "email:lena@example.test", "lena")
        finally:
            await team.store.close()

    asyncio.run(run())
    return key


def test_the_proxys_header_names_an_admin_or_a_member(proxy_settings, tmp_path):
    settings = _settings(proxy_settings, tmp_path, ("127.0.0.1/32",))
    _link_lena(settings.env)
    with ServerThread(create_app(settings)) as proxy:
        users = httpx.get(f"{proxy.url}/api/admin/users", headers={HEADER: "ada@example.test"})
        assert users.status_code == 200 and [u["name"] for u in users.json()["data"]] == ["lena"]
        disabled = httpx.patch(f"{proxy.url}/api/admin/users/lena", json={"disabled": False},
                               headers={HEADER: "ada@example.test"})
        assert disabled.status_code == 200
        who = httpx.get(f"{proxy.url}/auth/session", headers={HEADER: "lena@example.test"}).json()
        assert who["user"] == "lena" and who["identity"] == "header:lena@example.test" and not who["admin"]
        status = httpx.get(f"{proxy.url}{PREFIX}/status", headers={HEADER: "lena@example.test"})
        assert status.status_code == 200 and status.json()["user"] == "lena"
        # A member is not an admin, and a stranger is nobody.
        assert httpx.get(f"{proxy.url}/api/admin/users", headers={HEADER: "lena@example.test"}).status_code in (401, 403)
        stranger = httpx.get(f"{proxy.url}{PREFIX}/status", headers={HEADER: "eve@example.test"})
        assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "member_not_found"


def test_a_forged_header_from_an_address_that_is_not_the_proxy_is_refused(proxy_settings, tmp_path):
    settings = _settings(proxy_settings, tmp_path, ("10.20.30.40",))  # the proxy is elsewhere; we call from 127.0.0.1
    key = _link_lena(settings.env)
    with ServerThread(create_app(settings)) as proxy:
        for method, path in (("GET", "/api/admin/users"), ("GET", f"{PREFIX}/status"), ("GET", "/v1/models")):
            forged = httpx.request(method, f"{proxy.url}{path}", headers={HEADER: "ada@example.test"})
            assert forged.status_code == 403, path
            assert forged.json()["error"]["code"] == "identity_header_refused"
        assert httpx.get(f"{proxy.url}/api/admin/users").status_code in (401, 403)  # and no header: no admin
        # The Responses WebSocket too: lena's own key with the forged header is refused at the handshake,
        socket_url = f"{proxy.url.replace('http', 'ws')}/v1/responses"
        with pytest.raises(InvalidStatus) as refused:
            ws_client.connect(socket_url, additional_headers={"Authorization": f"Bearer {key}", HEADER: "ada@example.test"})
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["error"]["code"] == "identity_header_refused"
        ws_client.connect(socket_url, additional_headers={"Authorization": f"Bearer {key}"}).close()  # without it: open
