"""The credential store under the faults a long-running proxy meets: logins that change while it
runs, refreshes racing a new login, unusable lock files and damaged token values."""

from __future__ import annotations

import asyncio
import os

import httpx
import orjson
import pytest
import respx

from proxy.server.app import create_app
from proxy.credentials.codex import CodexCredentialSource
from proxy.errors import AuthenticationFailed, ServiceUnavailable
from tests.conftest import write_auth_file
from tests.mock_upstream import ServerThread
from tests.credentials.test_codex_login import TOKEN_URL, auth_data, fresh_tokens

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "auth.json")


async def test_a_login_made_during_a_refresh_is_not_overwritten(path):
    write_auth_file(path, auth_data(10))  # due for refresh
    new_login = auth_data(7200, refresh_token="rt_new_account_login_1")
    new_login["tokens"]["account_id"] = "acc-the-other-account"

    async def slow_token_endpoint(request):
        await asyncio.sleep(0.4)  # meanwhile, the user runs `codex login` as another account
        return httpx.Response(200, json=fresh_tokens())

    source = CodexCredentialSource(path, token_url=TOKEN_URL)
    with respx.mock() as mock:
        mock.post(TOKEN_URL).mock(side_effect=slow_token_endpoint)
        refresh = asyncio.create_task(source.current())
        await asyncio.sleep(0.15)
        write_auth_file(path, new_login)
        credential = await refresh
    assert orjson.loads(open(path, "rb").read()) == new_login  # the newer login is intact
    assert credential.account_id == "acc-the-other-account"
    assert credential.access_token == new_login["tokens"]["access_token"]


def test_a_login_created_after_start_is_used_without_restart(tmp_path, mock_codex, proxy_settings):
    os.unlink(proxy_settings.codex_auth_path)  # no login when the server starts
    with ServerThread(create_app(proxy_settings)) as proxy:
        before = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
        models_before = [m["id"] for m in httpx.get(f"{proxy.url}/v1/models").json()["data"]]
        write_auth_file(proxy_settings.codex_auth_path, mock_codex.state.auth_file())
        after = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
        models_after = [m["id"] for m in httpx.get(f"{proxy.url}/v1/models").json()["data"]]
        os.unlink(proxy_settings.codex_auth_path)  # and a logout is followed too
        gone = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert before.status_code == 401 and "codex login" in before.json()["error"]["message"]
    assert "gpt-5.4" not in models_before and "gpt-5.4" in models_after
    assert after.status_code == 200, after.text
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "provider_unavailable"


@pytest.mark.parametrize("kind", ["symlink", "directory"])
async def test_an_unusable_lock_file_is_a_clear_503_and_a_valid_token_still_serves(path, tmp_path, kind):
    lock = path + ".lock"
    if kind == "symlink":
        os.symlink(str(tmp_path / "elsewhere"), lock)
    else:
        os.mkdir(lock)
    write_auth_file(path, auth_data(30))  # due (inside the 60 s skew) but still valid
    source = CodexCredentialSource(path, token_url=TOKEN_URL)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=fresh_tokens()))
        still_valid = await source.current()
        with pytest.raises(ServiceUnavailable) as forced:
            await source.refresh(stale=still_valid)  # an upstream 401 forces a refresh: it needs the lock
    assert still_valid.access_token  # served while valid, though a refresh was due
    assert not route.called  # nobody refreshed without the lock
    assert forced.value.status_code == 503 and forced.value.code == "credential_lock_unavailable"
    assert lock in forced.value.message and ("symbolic link" in forced.value.message or "directory" in forced.value.message)
    write_auth_file(path, auth_data(-10))  # expired: nothing valid to serve
    with pytest.raises(ServiceUnavailable):
        await CodexCredentialSource(path, token_url=TOKEN_URL).current()


@pytest.mark.parametrize("field,value", [
    ("access_token", 12345), ("access_token", ["a", "b"]), ("access_token", "tökén-with-non-ascii"),
    ("access_token", "line\r\nInjected: 1"), ("refresh_token", {"x": 1}), ("account_id", ["acc"]),
    ("account_id", "acc\u00e9"),
])
async def test_damaged_token_values_are_a_401_and_the_file_is_untouched(path, field, value):
    data = auth_data(3600)
    data["tokens"][field] = value
    write_auth_file(path, data)
    before = open(path, "rb").read()
    with pytest.raises(AuthenticationFailed) as caught:
        await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert caught.value.code == "credentials_corrupt"
    assert "damaged" in caught.value.message
    assert open(path, "rb").read() == before


def test_a_damaged_login_is_a_401_end_to_end(mock_codex, proxy_settings):
    data = mock_codex.state.auth_file()
    data["tokens"]["access_token"] = "tøken"
    write_auth_file(proxy_settings.codex_auth_path, data)
    with ServerThread(create_app(proxy_settings)) as proxy:
        response = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    assert "damaged" in response.json()["error"]["message"]
