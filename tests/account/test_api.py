"""The account API: the seed's shapes, pending logins that are bounded, expire and cannot be guessed,
the admin key, the Codex CLI's usage endpoints, and no token in any response or log line."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.account.api import MAX_PENDING, PREFIX
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

ADMIN = "adm-" + "K3y" * 8


@pytest.fixture
def api(proxy_settings, mock_codex):
    settings = replace(proxy_settings, auth_base_url=mock_codex.url)
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def post(url: str, body: dict | None = None, **headers) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(body or {}), headers={"content-type": "application/json", **headers})


def test_status_has_the_seed_shape_and_no_token(api, auth_path):
    status = httpx.get(f"{api}{PREFIX}/status").json()
    assert status["vendor"] == "openai" and status["connected"] is True
    assert status["account_email"] == "user@example.com" and isinstance(status["expires_at"], int)
    assert status["usage"]["windows"][0]["name"] == "5-hour"
    assert httpx.get(f"{api}{PREFIX}/models").json()["models"][0] == "gpt-6-astra"


def test_device_login_through_the_api(api, mock_codex, auth_path):
    post(f"{api}{PREFIX}/logout")
    assert httpx.get(f"{api}{PREFIX}/status").json()["connected"] is False
    start = post(f"{api}{PREFIX}/device/start").json()
    assert set(start) == {"device_code", "user_code", "verification_uri", "verification_uri_complete", "expires_at",
                          "interval_seconds"}
    assert len(start["device_code"]) >= 43  # 256 random bits, not OpenAI's own device id
    assert start["device_code"] not in str(mock_codex.state.auth.devices)
    pending = post(f"{api}{PREFIX}/device/poll", {"device_code": start["device_code"]}).json()
    assert pending["connected"] is False
    httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": start["user_code"], "decision": "approve"})
    deadline = time.monotonic() + 10
    while not (done := post(f"{api}{PREFIX}/device/poll", {"device_code": start["device_code"]}).json())["connected"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert done["account_email"] == "ada@example.com"
    assert post(f"{api}{PREFIX}/device/poll", {"device_code": start["device_code"]}).status_code == 404  # used up


def test_unknown_handles_404_a_new_start_replaces_ones_own_and_logout_cancels(api):
    assert post(f"{api}{PREFIX}/device/poll", {"device_code": "guessed"}).status_code == 404
    handles = [post(f"{api}{PREFIX}/device/start").json()["device_code"] for _ in range(MAX_PENDING + 2)]
    # One login in progress per person: each start replaced the one before (no 429 for starting again).
    assert [post(f"{api}{PREFIX}/device/poll", {"device_code": h}).status_code for h in handles[:-1]] == \
        [404] * (MAX_PENDING + 1)
    assert post(f"{api}{PREFIX}/device/poll", {"device_code": handles[-1]}).status_code == 200
    post(f"{api}{PREFIX}/logout")
    assert post(f"{api}{PREFIX}/device/poll", {"device_code": handles[-1]}).status_code == 404


def test_expired_pending_logins_are_gone(api, mock_codex):
    mock_codex.state.auth.device_lifetime = 0.5
    handle = post(f"{api}{PREFIX}/device/start").json()["device_code"]
    time.sleep(0.7)
    assert post(f"{api}{PREFIX}/device/poll", {"device_code": handle}).status_code == 404


def test_the_admin_key_is_enforced_when_set(proxy_settings, mock_codex):
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, admin_key=ADMIN, api_keys=("c" * 20,))
    with ServerThread(create_app(settings)) as thread:
        assert httpx.get(f"{thread.url}{PREFIX}/status").status_code == 401  # client keys set: a key first
        assert httpx.get(f"{thread.url}{PREFIX}/status", headers={"x-admin-key": "wrong"}).status_code == 401
        assert httpx.get(f"{thread.url}{PREFIX}/status", headers={"x-api-key": "c" * 20}).status_code == 403
        assert httpx.get(f"{thread.url}{PREFIX}/status", headers={"x-admin-key": ADMIN}).status_code == 200
        assert httpx.get(f"{thread.url}{PREFIX}/status", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
        assert post(f"{thread.url}{PREFIX}/logout", **{"origin": "https://evil.example", "x-admin-key": ADMIN}).status_code == 403


def test_beyond_loopback_the_account_api_needs_an_admin_key():
    from proxy.account.api import AdminGuard
    from proxy.config.settings import Settings
    from proxy.errors import PermissionDenied

    class FakeRequest:
        headers: dict = {}

    with pytest.raises(PermissionDenied):
        AdminGuard(Settings(host="0.0.0.0", api_keys=("k" * 20,))).check(FakeRequest())
    AdminGuard(Settings()).check(FakeRequest())  # loopback without a key: open, like the rest


def test_codex_cli_usage_endpoints_answer_from_the_login(api, mock_codex):
    for path in ("/backend-api/wham/usage", "/api/codex/usage"):
        usage = httpx.get(f"{api}{path}").json()
        assert usage["plan_type"] == "pro" and usage["rate_limit"]["primary_window"]["used_percent"] == 42


def test_no_token_in_any_response_or_log_line(api, auth_path, mock_codex, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = orjson.loads(open(auth_path, "rb").read())["tokens"]
    bodies = [httpx.get(f"{api}{PREFIX}/status").text, httpx.get(f"{api}{PREFIX}/usage").text,
              httpx.get(f"{api}/api/llm/providers").text, httpx.get(f"{api}/account").text,
              post(f"{api}{PREFIX}/device/start").text]
    handle = orjson.loads(bodies[-1])["device_code"]
    device = next(iter(mock_codex.state.auth.devices))
    httpx.post(f"{mock_codex.url}/codex/device/decision",
               data={"user_code": mock_codex.state.auth.devices[device].user_code, "decision": "approve"})
    time.sleep(1.1)
    bodies.append(post(f"{api}{PREFIX}/device/poll", {"device_code": handle}).text)
    new_tokens = orjson.loads(open(auth_path, "rb").read())["tokens"]
    secrets = [tokens[k] for k in ("access_token", "refresh_token", "id_token")]
    secrets += [new_tokens[k] for k in ("access_token", "refresh_token", "id_token")] + [device]
    everything = "\n".join(bodies) + caplog.text
    assert all(secret not in everything for secret in secrets)
