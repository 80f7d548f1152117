"""``subrelay login`` / ``logout`` / ``status`` end to end against the mock OpenAI auth server, and the
login being used by an already-running proxy without a restart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser

import httpx
import orjson
import pytest

from proxy.server.app import create_app
from proxy.errors import AuthenticationFailed
from proxy.login.oauth import LoginPending, browser_login, exchange_code, poll_device_login, start_device_login
from tests.mock_upstream import ServerThread
from tests.server.test_cli import free_port

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


def login_env(mock_codex, path: str, port: int | None = None) -> dict[str, str]:
    return {**os.environ, "CODEX_AUTH_PATH": path, "SUBRELAY_AUTH_BASE_URL": mock_codex.url,
            "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex",
            "SUBRELAY_LOGIN_PORT": str(port or free_port()), "BROWSER": "true"}


class _Form(HTMLParser):
    """The hidden fields of the mock's consent page (what a browser would submit)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs["name"]] = attrs["value"]


def approve_in_browser(url: str, decision: str = "approve") -> httpx.Response:
    """What the person does: open the address, click Continue; the redirect goes to the callback."""
    page = httpx.get(url)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    base = url.split("/oauth/authorize")[0]
    redirect = httpx.post(f"{base}/oauth/authorize/decision", data={**form.fields, "decision": decision})
    assert redirect.status_code == 302
    return httpx.get(redirect.headers["location"].replace("localhost", "127.0.0.1"))


def _read_url(process: subprocess.Popen, deadline: float = 15) -> str:
    end = time.monotonic() + deadline
    seen = ""
    while time.monotonic() < end:
        line = process.stderr.readline()
        seen += line
        match = re.search(r"(http://127\.0\.0\.1:\d+/oauth/authorize\?\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no authorize URL printed: {seen}")


def test_browser_login_lands_and_a_running_proxy_uses_it(mock_codex, proxy_settings, tmp_path):
    path = str(tmp_path / "codex" / "auth.json")
    from dataclasses import replace

    with ServerThread(create_app(replace(proxy_settings, codex_auth_path=path))) as proxy:
        assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 401  # nobody logged in yet
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--no-browser"], text=True,
                                   env=login_env(mock_codex, path, port), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            url = _read_url(process)
            assert "originator=subrelay" in url and f"localhost%3A{port}%2Fauth%2Fcallback" in url
            # A callback with someone else's state is refused and the login keeps waiting.
            forged = httpx.get(f"http://127.0.0.1:{port}/auth/callback?code=x&state=forged")
            assert forged.status_code == 400
            landed = approve_in_browser(url)
            assert landed.status_code == 200 and "Signed in" in landed.text
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()
        output = process.stderr.read()
        assert "ada@example.com" in output and "Pro plan" in output
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        saved = orjson.loads(open(path, "rb").read())
        assert saved["tokens"]["account_id"] and saved["OPENAI_API_KEY"] is None
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT)  # no restart
        assert answer.status_code == 200, answer.text


async def test_the_mock_refuses_a_wrong_pkce_verifier(mock_codex):
    flow = browser_login(mock_codex.url, "http://localhost:1455/auth/callback")
    location = httpx.post(f"{mock_codex.url}/oauth/authorize/decision", data={
        **dict(httpx.URL(flow.url).params), "decision": "approve"}).headers["location"]
    code = httpx.URL(location).params["code"]
    async with httpx.AsyncClient() as http:
        with pytest.raises(AuthenticationFailed) as caught:
            await exchange_code(http, f"{mock_codex.url}/oauth/token", code, "not-the-verifier", flow.redirect_uri)
    assert "PKCE" in caught.value.message


def test_paste_the_redirect_url_when_the_browser_is_elsewhere(mock_codex, tmp_path):
    path = str(tmp_path / "auth.json")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--paste"], text=True, stdin=subprocess.PIPE,
                               env=login_env(mock_codex, path), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        url = _read_url(process)
        page = httpx.get(url)
        form = _Form()
        form.feed(page.text)
        location = httpx.post(f"{mock_codex.url}/oauth/authorize/decision",
                              data={**form.fields, "decision": "approve"}).headers["location"]
        process.stdin.write(location + "\n")  # the address the remote browser ended on
        process.stdin.flush()
        assert process.wait(timeout=20) == 0, process.stderr.read()
    finally:
        process.kill()
    assert orjson.loads(open(path, "rb").read())["tokens"]["access_token"] in mock_codex.state.valid_access


def test_paste_of_something_that_is_not_the_address_says_so(mock_codex, tmp_path):
    path = str(tmp_path / "auth.json")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--paste"], text=True, stdin=subprocess.PIPE,
                               env=login_env(mock_codex, path), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        _read_url(process)
        process.stdin.write("ac_1234abcd\n")  # the code alone, not the address
        process.stdin.flush()
        assert process.wait(timeout=20) == 1
    finally:
        process.kill()
    error = process.stderr.read()
    assert "not the address the browser ended on" in error and "/auth/callback?code=" in error
    assert "state mismatch" not in error and not os.path.exists(path)


def test_a_declined_browser_login_fails_cleanly(mock_codex, tmp_path):
    path = str(tmp_path / "auth.json")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--no-browser"], text=True,
                               env=login_env(mock_codex, path), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        approve_in_browser(_read_url(process), decision="deny")
        assert process.wait(timeout=20) == 1
    finally:
        process.kill()
    assert "declined" in process.stderr.read() and not os.path.exists(path)


def test_device_login_with_slow_down_then_approval_and_chat_at_once(mock_codex, proxy_settings, tmp_path):
    """The 'done when' of the login issue: no Codex CLI, `subrelay login --device`, approve, chat."""
    from dataclasses import replace

    mock_codex.state.auth.slow_down_polls = 1
    path = str(tmp_path / "device" / "auth.json")
    proxy = ServerThread(create_app(replace(proxy_settings, codex_auth_path=path))).start()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--device"], text=True,
                               env=login_env(mock_codex, path), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        head = ""
        while not re.search(r"\b[0-9A-F]{4}-[0-9A-F]{4}\b", head):
            head += process.stderr.readline()
        code = re.search(r"\b([0-9A-F]{4}-[0-9A-F]{4})\b", head).group(1)
        assert f"{mock_codex.url}/codex/device" in head
        approved = httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": code, "decision": "approve"})
        assert "approved" in approved.text
        assert process.wait(timeout=30) == 0
        assert httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT).status_code == 200  # the running proxy
    finally:
        process.kill()
        proxy.stop()
    assert os.path.exists(path)


async def test_device_login_pending_denied_and_expired(mock_codex):
    auth = mock_codex.url
    token_url = f"{auth}/oauth/token"
    async with httpx.AsyncClient() as http:
        device = await start_device_login(http, auth)
        with pytest.raises(LoginPending) as pending:
            await poll_device_login(http, auth, token_url, device)
        assert not pending.value.slow_down
        httpx.post(f"{auth}/codex/device/decision", data={"user_code": device.user_code, "decision": "deny"})
        with pytest.raises(AuthenticationFailed) as denied:
            await poll_device_login(http, auth, token_url, device)
        assert denied.value.code == "access_denied"
        mock_codex.state.auth.device_lifetime = -1
        expired = await start_device_login(http, auth)
        with pytest.raises(AuthenticationFailed) as late:
            await poll_device_login(http, auth, token_url, expired)
        assert late.value.code == "expired_token"


def test_logging_in_over_another_account_says_so_and_logout_removes_it(mock_codex, tmp_path, auth_path):
    env = login_env(mock_codex, auth_path)  # auth_path holds a login of user@example.com (Plus)
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--no-browser"], text=True, env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        approve_in_browser(_read_url(process))
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    assert "replaced the login of another account: user@example.com" in process.stderr.read()
    out = subprocess.run([sys.executable, "-m", "proxy", "logout"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and not os.path.exists(auth_path)


def test_status_shows_plan_and_allowance_without_tokens(mock_codex, auth_path):
    env = login_env(mock_codex, auth_path)
    human = subprocess.run([sys.executable, "-m", "proxy", "status"], env=env, capture_output=True, text=True)
    machine = subprocess.run([sys.executable, "-m", "proxy", "status", "--json"], env=env, capture_output=True, text=True)
    assert human.returncode == machine.returncode == 0
    assert "user@example.com" in human.stdout and "5-hour" in human.stdout and "42% used" in human.stdout
    assert "weekly" in human.stdout and "17% used" in human.stdout
    report = json.loads(machine.stdout)
    assert report["chatgpt"]["connected"] and report["chatgpt"]["plan"] == "plus"
    assert [w["name"] for w in report["chatgpt"]["usage"]["windows"]] == ["5-hour", "weekly"]
    tokens = orjson.loads(open(auth_path, "rb").read())["tokens"]
    for secret in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"]):
        assert secret not in human.stdout + machine.stdout
    os.unlink(auth_path)
    nothing = subprocess.run([sys.executable, "-m", "proxy", "status"], env=env, capture_output=True, text=True)
    assert nothing.returncode == 1


def test_status_json_is_valid_when_nobody_is_logged_in(tmp_path):
    result = subprocess.run([sys.executable, "-m", "proxy", "status", "--json"], capture_output=True, text=True,
                            env={**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "none.json")})
    assert result.returncode == 1 and json.loads(result.stdout)["chatgpt"]["connected"] is False


