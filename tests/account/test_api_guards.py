"""The account API's smaller guards (issue 17, finding 10): the pending-login cap is checked before the
auth server is asked, and the account page runs only its own script and is never sniffed."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.account.api import MAX_PENDING, PREFIX
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread


@pytest.fixture
def api(proxy_settings, mock_codex):
    settings = replace(proxy_settings, auth_base_url=mock_codex.url)
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def start(url: str) -> httpx.Response:
    return httpx.post(f"{url}{PREFIX}/device/start", content=b"{}", headers={"content-type": "application/json"})


def test_a_refused_device_start_never_calls_the_auth_server(proxy_settings, mock_codex, tmp_path):
    from tests.team.test_request_path import make_user

    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    keys = [make_user(env, f"member{n}") for n in range(MAX_PENDING + 3)]
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env=env)
    with ServerThread(create_app(settings)) as thread:
        def start_as(key: str) -> httpx.Response:
            return httpx.post(f"{thread.url}{PREFIX}/device/start", content=b"{}", headers={
                "content-type": "application/json", "authorization": f"Bearer {key}"})

        assert all(start_as(key).status_code == 200 for key in keys[:MAX_PENDING])  # one person each
        asked = len(mock_codex.state.auth.devices)
        refused = [start_as(key) for key in keys[MAX_PENDING:]]
        assert {r.status_code for r in refused} == {429}
        assert refused[0].json()["error"]["code"] == "too_many_pending_logins"
        assert len(mock_codex.state.auth.devices) == asked == MAX_PENDING


def test_the_account_page_allows_only_its_own_script_and_is_not_sniffed(api):
    page = httpx.get(f"{api}/account")
    policy = page.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy).group(1)
    assert "unsafe-inline" not in script_src
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert scripts
    for script in scripts:  # each inline script is allowed by its own hash, nothing else is
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src
    assert page.headers["x-content-type-options"] == "nosniff"
    assert orjson.loads(httpx.get(f"{api}{PREFIX}/models").content)["vendor"] == "openai"
