"""Codex personal access tokens (``at-…``) as a login kind (issue 26 item 5): ``subrelay login
--with-access-token`` (stdin or ``CODEX_ACCESS_TOKEN``, never argv), the account from whoami, requests signed
with the token and its account, no refresh ever (a revoked token is a clear 401 saying how to log in again),
the account API and a team member's own sealed login — and never the token in an answer or a log line."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import stat
import subprocess
import sys

import httpx
import orjson
import pytest

from proxy.config.settings import Settings
from proxy.account.login_command import login_with_access_token
from proxy.observe.redact import redact
from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.login.test_login import login_env
from tests.mock_upstream import ServerThread

BODY = {"model": "gpt-5.4", "input": "hi with a token", "stream": False}


@pytest.fixture
def token(mock_codex) -> str:
    return mock_codex.state.issue_access_token(email="robot@example.com", account="acc-pat-mock", plan="enterprise")


@pytest.fixture
def pat_settings(mock_codex, tmp_path, token) -> Settings:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"OPENAI_API_KEY": None, "personal_access_token": token}))  # as `codex login` writes it
    return Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                    auth_base_url=mock_codex.url, codex_auth_path=str(path))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_login_reads_the_token_from_stdin_and_writes_what_codex_writes(mock_codex, tmp_path, token):
    path = str(tmp_path / "codex" / "auth.json")
    result = subprocess.run([sys.executable, "-m", "proxy", "login", "--with-access-token"], input=token + "\n",
                            capture_output=True, text=True, env=login_env(mock_codex, path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "robot@example.com" in result.stderr and "acc-pat-mock" in result.stderr
    assert token not in result.stdout + result.stderr
    assert orjson.loads(open(path, "rb").read()) == {"OPENAI_API_KEY": None, "personal_access_token": token}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_login_takes_codex_access_token_from_the_environment_and_never_from_argv(mock_codex, tmp_path, token):
    path = str(tmp_path / "auth.json")
    settings = Settings(auth_base_url=mock_codex.url, codex_auth_path=path, env={"CODEX_ACCESS_TOKEN": token})
    out = io.StringIO()
    assert login_with_access_token(settings, stdin=_Terminal(), out=out) == 0, out.getvalue()
    assert orjson.loads(open(path, "rb").read())["personal_access_token"] == token
    os.unlink(path)
    argv = subprocess.run([sys.executable, "-m", "proxy", "login", "--with-access-token", token], capture_output=True,
                          text=True, env=login_env(mock_codex, path), timeout=60)
    assert argv.returncode == 2 and not os.path.exists(path)  # no argument takes it (ps would show it)


def test_a_wrong_or_revoked_token_is_refused_and_nothing_is_written(mock_codex, tmp_path, token):
    path = str(tmp_path / "auth.json")
    settings = Settings(auth_base_url=mock_codex.url, codex_auth_path=path)
    for given, words in (("sk-not-an-access-token-0123456789", "start with 'at-'"), ("", "No access token")):
        out = io.StringIO()
        assert login_with_access_token(settings, stdin=io.StringIO(given), out=out) == 1
        assert words in out.getvalue() and not os.path.exists(path)
    mock_codex.state.valid_access.discard(token)  # revoked in ChatGPT
    out = io.StringIO()
    assert login_with_access_token(settings, stdin=io.StringIO(token), out=out) == 1
    assert "revoked" in out.getvalue() and token not in out.getvalue() and not os.path.exists(path)


def test_requests_are_signed_with_the_token_and_its_whoami_account(mock_codex, pat_settings, token):
    with ServerThread(create_app(pat_settings)) as proxy:
        for _ in range(2):
            answer = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30)
            assert answer.status_code == 200, answer.text
    sent = mock_codex.state.requests[-1]["headers"]
    assert sent["authorization"] == f"Bearer {token}" and sent["chatgpt-account-id"] == "acc-pat-mock"
    assert mock_codex.state.auth.whoami_calls == 1  # asked once, like Codex once per start


def test_a_revoked_token_is_a_clear_401_and_never_a_refresh(mock_codex, pat_settings, token, caplog):
    caplog.set_level(logging.DEBUG)
    with ServerThread(create_app(pat_settings)) as proxy:
        assert httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30).status_code == 200
        mock_codex.state.valid_access.discard(token)
        answer = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30)
        chat = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30,
                          json={"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == chat.status_code == 401
    error = answer.json()["error"]
    assert error["code"] == "access_token_revoked"
    assert "cannot be refreshed" in error["message"] and "subrelay login --with-access-token" in error["message"]
    assert mock_codex.state.refresh_calls == 0  # nothing was sent to the token endpoint
    for text in (answer.text, chat.text, caplog.text):
        assert token not in text


def test_the_account_api_logs_in_with_a_token_and_shows_who_without_it(mock_codex, proxy_settings, token):
    settings = dataclasses.replace(proxy_settings, auth_base_url=mock_codex.url)
    url = "/api/llm/subscription/openai"
    with ServerThread(create_app(settings)) as proxy:
        wrong = httpx.post(f"{proxy.url}{url}/access-token", json={"access_token": "eyJhbGciOi.not-a-pat"}, timeout=30)
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_access_token"
        answer = httpx.post(f"{proxy.url}{url}/access-token", json={"access_token": token}, timeout=30)
        assert answer.status_code == 200, answer.text
        status = httpx.get(f"{proxy.url}{url}/status", timeout=30)
        turn = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30)
    for shown in (answer, status):
        report = shown.json()
        assert report["connected"] and report["login"] == "access_token"
        assert report["account_email"] == "robot@example.com" and report["account_id"] == "acc-pat-mock"
        assert report["plan"] == "enterprise" and report["usage"]["windows"]
        assert token not in shown.text
    assert turn.status_code == 200
    assert mock_codex.state.requests[-1]["headers"]["authorization"] == f"Bearer {token}"


def test_a_team_members_own_token_is_sealed_and_signs_only_their_requests(mock_codex, proxy_settings, tmp_path, token):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}

    async def add() -> str:
        team = open_team(env, create=True)
        try:
            return (await add_user(team.store, "alice"))[1]
        finally:
            await team.store.close()

    key = asyncio.run(add())
    headers = {"Authorization": f"Bearer {key}"}
    owner_key = "sk-subrelay-owner-key-0123456789"
    settings = dataclasses.replace(proxy_settings, auth_base_url=mock_codex.url, env=env, api_keys=(owner_key,))
    url = "/api/llm/subscription/openai"
    with ServerThread(create_app(settings)) as proxy:
        saved = httpx.post(f"{proxy.url}{url}/access-token", json={"access_token": token}, headers=headers, timeout=30)
        assert saved.status_code == 200, saved.text
        assert saved.json()["user"] == "alice" and saved.json()["login"] == "access_token"
        assert httpx.post(f"{proxy.url}/v1/responses", json=BODY, headers=headers, timeout=30).status_code == 200
        sent = mock_codex.state.requests[-1]["headers"]
        assert sent["authorization"] == f"Bearer {token}" and sent["chatgpt-account-id"] == "acc-pat-mock"
        owner = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30,  # the owner keeps their own login
                           headers={"Authorization": f"Bearer {owner_key}"})
        assert owner.status_code == 200 and mock_codex.state.requests[-1]["headers"]["authorization"] != f"Bearer {token}"
        mock_codex.state.valid_access.discard(token)
        refused = httpx.post(f"{proxy.url}/v1/responses", json=BODY, headers=headers, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "access_token_revoked"
    assert "--user alice" in refused.json()["error"]["message"] and token not in refused.text
    stored = (tmp_path / "state" / "team.sqlite3").read_bytes()
    assert token.encode() not in stored  # sealed at rest


def test_access_tokens_are_masked_in_logs_by_pattern():
    assert redact("sent at-Zq3xK9vLm2PwR7tY8uBn5cD to the backend") == "sent [REDACTED] to the backend"
    assert redact("chat-completions, at-least-once, what-at-all") == "chat-completions, at-least-once, what-at-all"


def test_status_names_the_token_login_and_its_account_without_the_token(mock_codex, pat_settings, token):
    env = login_env(mock_codex, pat_settings.codex_auth_path)
    human = subprocess.run([sys.executable, "-m", "proxy", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "robot@example.com" in human.stdout and "acc-pat-mock" in human.stdout
    assert "(Codex access token)" in human.stdout and "42% used" in human.stdout
    assert token not in human.stdout + human.stderr


def test_with_redis_the_owners_token_moves_to_the_store_with_its_account(mock_codex, pat_settings, token):
    from proxy.team.secretbox import new_secret
    from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer

    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    redis = RedisServer().start()
    try:
        env = {"SUBRELAY_REDIS_URL": redis.url, "SUBRELAY_SECRET_KEY": new_secret()}
        with ServerThread(create_app(dataclasses.replace(pat_settings, env=env))) as proxy:
            answer = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30)
            os.unlink(pat_settings.codex_auth_path)  # from now on only the store's copy can sign
            again = httpx.post(f"{proxy.url}/v1/responses", json=BODY, timeout=30)
    finally:
        redis.close()
    assert answer.status_code == again.status_code == 200, answer.text + again.text
    sent = mock_codex.state.requests[-1]["headers"]
    assert sent["authorization"] == f"Bearer {token}" and sent["chatgpt-account-id"] == "acc-pat-mock"
