"""A member's own keys on /api/account/keys: only their own, named, expiring, bounded, and an expired or
revoked key refused on its next request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx
import orjson

from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.keys import hash_key
from proxy.team.member_keys import MEMBER_KEY
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user, post

KEYS = "/api/account/keys"


def test_members_make_and_revoke_only_their_own_keys(proxy_settings, tmp_path):
    settings = replace(proxy_settings, admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")})
    lena, bob = make_user(settings.env, "lena"), make_user(settings.env, "bob")
    with ServerThread(create_app(settings)) as proxy:
        made = post(f"{proxy.url}{KEYS}", lena, {"name": "laptop", "expires_in_days": 7})
        assert made.status_code == 201 and made.json()["key"].startswith("srk_")
        view = made.json()
        assert 6.9 * 86400 < view["expires_at"] - time.time() <= 7 * 86400
        assert httpx.get(f"{proxy.url}/v1/models", headers={"authorization": f"Bearer {view['key']}"}).status_code == 200
        for body, code in (({"name": "x", "expires_in_days": 0}, "invalid_expiry"), ({"name": ""}, "invalid_name"),
                           ({"name": "laptop"}, "key_exists")):
            refused = post(f"{proxy.url}{KEYS}", lena, body)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == code
        listed = httpx.get(f"{proxy.url}{KEYS}", headers={"authorization": f"Bearer {bob}"}).json()["data"]
        assert listed == []  # bob sees none of lena's
        theirs = httpx.delete(f"{proxy.url}{KEYS}/{view['key_id']}", headers={"authorization": f"Bearer {bob}"})
        assert theirs.status_code == 404
        admin = httpx.get(f"{proxy.url}{KEYS}", headers={"x-admin-key": ADMIN_KEY})
        assert admin.status_code == 401  # the admin key is no member key: these are members' own
        assert httpx.delete(f"{proxy.url}{KEYS}/{view['key_id']}",
                            headers={"authorization": f"Bearer {lena}"}).status_code == 200
        assert httpx.get(f"{proxy.url}/v1/models", headers={"authorization": f"Bearer {view['key']}"}).status_code == 401


def test_an_expired_member_key_is_refused(proxy_settings, tmp_path):
    settings = replace(proxy_settings, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")})
    make_user(settings.env, "lena")
    key = "srk_" + "e" * 43

    async def plant() -> None:  # a key whose expiry passed a second ago (the record outlives it by a little)
        team = open_team(settings.env)
        try:
            record = {"name": "old", "key_id": hash_key(key)[:12], "created_at": 0, "expires_at": int(time.time()) - 1,
                      "user": "lena"}
            await team.store.put_record(MEMBER_KEY, hash_key(key), orjson.dumps(record), "lena", time.time() + 60)
        finally:
            await team.store.close()

    asyncio.run(plant())
    with ServerThread(create_app(settings)) as proxy:
        assert httpx.get(f"{proxy.url}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 401
