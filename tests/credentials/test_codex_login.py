"""The Codex credential file: caching, expiry, single-flight refresh, atomic writes, no damage."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time

import httpx
import orjson
import pytest
import respx

from proxy.credentials.codex import CodexCredentialSource
from proxy.credentials.files import atomic_write_json
from proxy.errors import AuthenticationFailed, UpstreamFailure
from tests.conftest import write_auth_file
from tests.mock_upstream.server import ACCOUNT_ID, make_jwt

TOKEN_URL = "https://auth.test/oauth/token"


def auth_data(access_exp_in: float, *, refresh_token: str = "rt_original_token_123") -> dict:
    claims = {"exp": int(time.time() + access_exp_in),
              "https://api.openai.com/auth": {"chatgpt_account_id": "acc-from-jwt", "chatgpt_plan_type": "pro"}}
    return {
        "OPENAI_API_KEY": None,
        "tokens": {"id_token": make_jwt(claims), "access_token": make_jwt(claims), "refresh_token": refresh_token,
                   "account_id": ACCOUNT_ID},
        "last_refresh": "2026-11-20T10:00:00.000000Z",
        "auth_mode": "chatgpt",
        "future_field": {"kept": True},
    }


def fresh_tokens() -> dict:
    return {"access_token": make_jwt({"exp": int(time.time()) + 3600}), "refresh_token": "rt_rotated_token_456",
            "id_token": make_jwt({"exp": int(time.time()) + 3600})}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "auth.json")


async def test_valid_file_gives_token_and_account_without_refresh(path):
    data = auth_data(3600)
    write_auth_file(path, data)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(TOKEN_URL)
        credential = await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert credential.access_token == data["tokens"]["access_token"]
    assert credential.account_id == ACCOUNT_ID and credential.plan_type == "pro"
    assert not route.called


async def test_account_id_falls_back_to_the_jwt_claim(path):
    data = auth_data(3600)
    del data["tokens"]["account_id"]
    write_auth_file(path, data)
    assert (await CodexCredentialSource(path, token_url=TOKEN_URL).current()).account_id == "acc-from-jwt"


async def test_a_login_in_another_terminal_is_picked_up_without_restart(path):
    write_auth_file(path, auth_data(3600))
    source = CodexCredentialSource(path, token_url=TOKEN_URL)
    first = await source.current()
    replacement = auth_data(7200, refresh_token="rt_other_login_789")
    write_auth_file(path, replacement)
    second = await source.current()
    assert first.access_token != second.access_token == replacement["tokens"]["access_token"]


async def test_token_within_skew_is_refreshed_and_written_back_atomically(path):
    write_auth_file(path, auth_data(30))  # expires inside the 60 s skew
    tokens = fresh_tokens()
    with respx.mock:
        route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=tokens))
        credential = await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    sent = json.loads(route.calls[0].request.content)
    assert sent["grant_type"] == "refresh_token" and sent["refresh_token"] == "rt_original_token_123"
    assert sent["client_id"] and "offline_access" in sent["scope"]
    assert credential.access_token == tokens["access_token"]
    saved = json.loads(open(path).read())
    assert saved["tokens"]["access_token"] == tokens["access_token"]
    assert saved["tokens"]["refresh_token"] == "rt_rotated_token_456"
    assert saved["tokens"]["account_id"] == ACCOUNT_ID
    assert saved["future_field"] == {"kept": True} and saved["auth_mode"] == "chatgpt"
    assert saved["last_refresh"] != "2026-11-20T10:00:00.000000Z"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(os.path.dirname(path)) == ["auth.json", "auth.json.lock"]  # no temp file left


async def test_refresh_without_a_new_refresh_token_keeps_the_old_one(path):
    write_auth_file(path, auth_data(-10))
    tokens = fresh_tokens()
    del tokens["refresh_token"]
    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=tokens))
        await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert json.loads(open(path).read())["tokens"]["refresh_token"] == "rt_original_token_123"


async def test_fifty_concurrent_requests_on_an_expired_token_cause_one_refresh(path):
    write_auth_file(path, auth_data(-10))
    source = CodexCredentialSource(path, token_url=TOKEN_URL)

    async def slow_refresh(request):
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=fresh_tokens())

    with respx.mock:
        route = respx.post(TOKEN_URL).mock(side_effect=slow_refresh)
        credentials = await asyncio.gather(*(source.current() for _ in range(50)))
    assert route.call_count == 1
    assert len({c.access_token for c in credentials}) == 1


async def test_forced_refresh_is_skipped_when_the_file_was_already_rotated(path):
    write_auth_file(path, auth_data(3600))
    source = CodexCredentialSource(path, token_url=TOKEN_URL)
    stale = await source.current()
    rotated = auth_data(3600, refresh_token="rt_rotated_elsewhere_1")
    write_auth_file(path, rotated)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(TOKEN_URL)
        credential = await source.refresh(stale=stale)
    assert not route.called
    assert credential.access_token == rotated["tokens"]["access_token"]


@pytest.mark.parametrize("content,code", [
    (b"{not json", "credentials_corrupt"),
    (b"", "credentials_corrupt"),
    (b"[1, 2]", "credentials_corrupt"),
    (b'{"tokens": {}}', "credentials_missing"),
])
async def test_a_damaged_file_is_reported_and_never_overwritten(path, content, code):
    with open(path, "wb") as handle:
        handle.write(content)
    before = os.stat(path)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(TOKEN_URL)
        with pytest.raises(AuthenticationFailed) as info:
            await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert info.value.code == code and "codex login" in info.value.message
    assert open(path, "rb").read() == content and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert not route.called


async def test_missing_file_tells_the_user_what_to_run(path):
    with pytest.raises(AuthenticationFailed) as info:
        await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert info.value.status_code == 401 and "codex login" in info.value.message and path in info.value.message


@pytest.mark.parametrize("response", [
    httpx.Response(401, json={"error": {"code": "refresh_token_reused", "message": "already used"}}),
    httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired"}),
    httpx.Response(500, text="oops"),
    httpx.ConnectError("refused"),
])
async def test_a_failed_refresh_keeps_the_old_file_intact(path, response):
    write_auth_file(path, auth_data(-10))
    original = open(path, "rb").read()
    with respx.mock:
        if isinstance(response, Exception):
            respx.post(TOKEN_URL).mock(side_effect=response)
        else:
            respx.post(TOKEN_URL).mock(return_value=response)
        with pytest.raises((AuthenticationFailed, UpstreamFailure)) as info:
            await CodexCredentialSource(path, token_url=TOKEN_URL).current()
    assert open(path, "rb").read() == original
    if isinstance(info.value, AuthenticationFailed):
        assert "codex login" in info.value.message


def test_atomic_write_keeps_a_symlink_and_writes_its_target_private(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("{}")
    os.chmod(target, 0o644)
    link = tmp_path / "auth.json"
    link.symlink_to(target)
    atomic_write_json(str(link), {"a": 1})
    assert link.is_symlink()
    assert orjson.loads(target.read_bytes()) == {"a": 1}
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


RACER = """
import asyncio, sys
from proxy.credentials.codex import CodexCredentialSource
source = CodexCredentialSource(sys.argv[1], token_url=sys.argv[2])
credential = asyncio.run(source.current())
print(credential.access_token[-12:])
"""


def test_two_processes_racing_on_an_expired_file_refresh_once(tmp_path, mock_codex):
    """Refresh tokens are single-use: a second refresh would log the user out."""
    mock_codex.state.refresh_delay = 0.3  # both processes are surely waiting at the same time
    path = str(tmp_path / "auth.json")
    write_auth_file(path, mock_codex.state.auth_file(expires_in=-10))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, path, f"{mock_codex.url}/oauth/token"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    results = [racer.communicate(timeout=30) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err.decode()[-500:] for _, err in results]
    assert mock_codex.state.refresh_calls == 1
    outputs = {out.strip() for out, _ in results}
    assert len(outputs) == 1
    saved = json.loads(open(path).read())
    assert saved["tokens"]["access_token"].endswith(outputs.pop().decode())
    assert saved["tokens"]["refresh_token"] in mock_codex.state.live_refresh


async def test_tokens_from_a_refresh_that_could_not_be_saved_are_kept_in_memory(path, monkeypatch, caplog):
    """The old refresh token is spent once refreshed: losing the new one would log the user out."""
    write_auth_file(path, auth_data(-10))
    original = open(path, "rb").read()

    def read_only_disk(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("proxy.credentials.codex.atomic_write_json", read_only_disk)
    source = CodexCredentialSource(path, token_url=TOKEN_URL)
    tokens = fresh_tokens()
    with respx.mock:
        route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=tokens))
        first = await source.current()
        second = await source.current()
    assert first.access_token == second.access_token == tokens["access_token"]
    assert route.call_count == 1
    assert open(path, "rb").read() == original
    assert "could not save" in caplog.text and tokens["access_token"] not in caplog.text
    replacement = auth_data(3600, refresh_token="rt_new_login_after_fix")
    write_auth_file(path, replacement)  # the user ran `codex login`: the file wins again
    assert (await source.current()).access_token == replacement["tokens"]["access_token"]
