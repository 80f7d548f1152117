"""Team mode on the request path, end to end: each person's own key and own ChatGPT login (through the
account API's device flow), the real SDKs sending with each key, limits that hold however requests
race, the quota-aware fallback, and nothing readable in the store file."""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import replace

import anthropic
import httpx
import orjson
import pytest
from openai import OpenAI

from proxy.account.api import PREFIX
from proxy.config.file import parse_config
from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user, change_user
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState

USER_TURN = [{"role": "user", "content": "hi"}]


def make_user(env: dict, name: str, **options) -> str:
    """``subrelay users add`` as a function: the new user's key."""

    async def run() -> str:
        team = open_team(env, create=True)
        try:
            return (await add_user(team.store, name, **options))[1]
        finally:
            await team.store.close()

    return asyncio.run(run())


def change(env: dict, name: str, **changes) -> None:
    async def run() -> None:
        team = open_team(env)
        try:
            await change_user(team.store, name, changes)
        finally:
            await team.store.close()

    asyncio.run(run())


def post(url: str, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(body or {}), timeout=30,
                      headers={"content-type": "application/json", "authorization": f"Bearer {key}"})


def device_login(base: str, key: str, mock_codex, email: str) -> dict:
    """What a person does on the account page: start, approve the code as ``email``, poll until connected."""
    start = post(f"{base}{PREFIX}/device/start", key).json()
    mock_codex.state.auth.email = email
    httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": start["user_code"], "decision": "approve"})
    deadline = time.monotonic() + 15
    while not (status := post(f"{base}{PREFIX}/device/poll", key, {"device_code": start["device_code"]}).json()).get(
            "connected"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    return status


@pytest.fixture
def team_env(state_dir):
    return {"SUBRELAY_STATE_DIR": str(state_dir)}


@pytest.fixture
def team_proxy(proxy_settings, mock_codex, team_env):
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env=team_env)
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def test_each_person_is_signed_with_their_own_login_and_nobody_elses(team_proxy, mock_codex, team_env):
    alice, bob, carol = (make_user(team_env, name) for name in ("alice", "bob", "carol"))
    assert device_login(team_proxy, alice, mock_codex, "alice@example.com")["account_email"] == "alice@example.com"
    assert device_login(team_proxy, bob, mock_codex, "bob@example.com")["account_email"] == "bob@example.com"
    mock_codex.state.requests.clear()

    for key, who in ((alice, "alice"), (bob, "bob"), (alice, "alice"), (bob, "bob")):
        answer = OpenAI(base_url=f"{team_proxy}/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-5.4", messages=USER_TURN)
        assert answer.choices[0].message.content
        messages = anthropic.Anthropic(base_url=team_proxy, api_key=key, max_retries=0).messages.create(
            model="gpt-5.4", max_tokens=64, messages=USER_TURN)
        assert any(block.type == "text" and block.text for block in messages.content)
    accounts = [r["headers"].get("chatgpt-account-id") for r in mock_codex.state.requests]
    assert accounts == ["acc-alice-mock"] * 2 + ["acc-bob-mock"] * 2 + ["acc-alice-mock"] * 2 + ["acc-bob-mock"] * 2

    sent = len(mock_codex.state.requests)  # carol has no login: a 401 that says where to log in, nothing sent
    refused = post(f"{team_proxy}/v1/chat/completions", carol, {"model": "gpt-5.4", "messages": USER_TURN})
    assert refused.status_code == 401 and "/account" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "login_required"
    assert len(mock_codex.state.requests) == sent  # never the owner's auth.json, never alice's login

    # Each sees only their own account on the account API.
    assert httpx.get(f"{team_proxy}{PREFIX}/status", headers={"authorization": f"Bearer {bob}"}).json()[
        "account_email"] == "bob@example.com"
    assert httpx.get(f"{team_proxy}{PREFIX}/status", headers={"authorization": f"Bearer {carol}"}).json()[
        "connected"] is False

    # The store holds no token in plain text (and no client key).
    raw = b"".join(p.read_bytes() for p in (team_env and __import__("pathlib").Path(team_env["SUBRELAY_STATE_DIR"])).glob(
        "team.sqlite3*"))
    for request in mock_codex.state.requests:
        token = request["headers"]["authorization"].removeprefix("Bearer ")
        assert token.encode() not in raw and token.split(".")[1].encode() not in raw
    assert alice.encode() not in raw and bob.encode() not in raw


def test_a_request_needs_a_users_key_once_users_exist_and_a_disabled_key_fails_at_once(team_proxy, mock_codex, team_env):
    ok = httpx.post(f"{team_proxy}/v1/chat/completions", json={"model": "gpt-5.4", "messages": USER_TURN})
    assert ok.status_code == 200  # no users yet: the single-person proxy as before
    key = make_user(team_env, "dave")
    device_login(team_proxy, key, mock_codex, "dave@example.com")
    time.sleep(1.1)  # the running server notices the store that `users add` just created
    anonymous = httpx.post(f"{team_proxy}/v1/chat/completions", json={"model": "gpt-5.4", "messages": USER_TURN})
    assert anonymous.status_code == 401
    signed = post(f"{team_proxy}/v1/chat/completions", key, {"model": "gpt-5.4", "messages": USER_TURN})
    assert signed.status_code == 200, signed.text
    change(team_env, "dave", disabled=True)
    assert post(f"{team_proxy}/v1/chat/completions", key, {"model": "gpt-5.4", "messages": USER_TURN}).status_code == 401


def test_a_limit_of_n_admits_exactly_n_of_3n_concurrent_requests(team_proxy, mock_codex, team_env):
    key = make_user(team_env, "erin", rpm=4)
    device_login(team_proxy, key, mock_codex, "erin@example.com")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(
                f"{team_proxy}/v1/chat/completions", json={"model": "gpt-5.4", "messages": USER_TURN},
                headers={"authorization": f"Bearer {key}"}) for _ in range(12)))

    answers = asyncio.run(burst())
    assert sorted(r.status_code for r in answers) == [200] * 4 + [429] * 8
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.json()["error"]["code"] == "user_rate_limit_exceeded" and int(limited.headers["retry-after"]) >= 1
    over = httpx.post(f"{team_proxy}/v1/messages", json={"model": "gpt-5.4", "max_tokens": 8, "messages": USER_TURN},
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert over.status_code == 429 and over.json()["type"] == "error"  # the Anthropic shape on its door
    assert over.json()["error"]["type"] == "rate_limit_error"


def test_a_users_model_list_bounds_what_they_may_call(team_proxy, mock_codex, team_env):
    key = make_user(team_env, "fay", models="gpt-5.4-mini")
    device_login(team_proxy, key, mock_codex, "fay@example.com")
    refused = post(f"{team_proxy}/v1/chat/completions", key, {"model": "gpt-5.4", "messages": USER_TURN})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    listed = [m["id"] for m in httpx.get(f"{team_proxy}/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]]
    assert listed == ["gpt-5.4-mini"]


@pytest.fixture
def openai_key_server():
    app = MockOpenAIServer()
    app.state = OpenAIMockState()
    with ServerThread(app) as thread:
        yield app, thread


def test_the_quota_aware_fallback_switches_at_the_threshold_and_back_after_the_reset(
        proxy_settings, mock_codex, team_env, openai_key_server):
    app, thread = openai_key_server
    config = parse_config(tomllib.loads(f'''
fallback_at_percent = 90
[providers.team]
kind = "custom"
base_url = "{thread.url}/v1"
api_key_env = "TEAM_OPENAI_KEY"
models = ["gpt-5.4"]
[fallbacks]
"codex/gpt-5.4" = ["team/gpt-5.4"]
'''))
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, file=config,
                       env={**team_env, "TEAM_OPENAI_KEY": app.state.api_key})
    grace = make_user(team_env, "grace", fallback=True)
    hank = make_user(team_env, "hank")  # has not opted in: stays on his own plan
    with ServerThread(create_app(settings)) as proxy:
        base = proxy.url
        device_login(base, grace, mock_codex, "grace@example.com")
        device_login(base, hank, mock_codex, "hank@example.com")

        def route(key: str) -> str:
            answer = post(f"{base}/v1/chat/completions", key, {"model": "codex/gpt-5.4", "messages": USER_TURN})
            assert answer.status_code == 200, answer.text
            return answer.headers["x-subrelay-route"]

        assert route(grace) == "codex/gpt-5.4"
        mock_codex.state.window_headers = {"x-codex-primary-used-percent": "93",
                                           "x-codex-primary-reset-after-seconds": "2"}
        assert route(grace) == "codex/gpt-5.4"  # this answer reports 93%: the next one moves
        assert route(grace) == "team/gpt-5.4"
        assert route(hank) == "codex/gpt-5.4"  # hank's own window (also 93% now) but no opt-in
        assert route(hank) == "codex/gpt-5.4"
        time.sleep(2.2)  # grace's window resets
        mock_codex.state.window_headers = {"x-codex-primary-used-percent": "3"}
        assert route(grace) == "codex/gpt-5.4"


def test_an_admin_logs_a_user_in_at_the_terminal_and_only_that_user_is_signed_with_it(
        team_proxy, mock_codex, team_env, tmp_path):
    import re
    import subprocess
    import sys

    from tests.login.test_login import login_env

    ivy = make_user(team_env, "ivy")
    owner_file = str(tmp_path / "owner-auth.json")
    env = {**login_env(mock_codex, owner_file), **team_env}
    mock_codex.state.auth.email = "ivy@example.com"
    process = subprocess.Popen([sys.executable, "-m", "proxy", "login", "--device", "--user", "ivy"], text=True, env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        head = ""
        while not re.search(r"\b[0-9A-F]{4}-[0-9A-F]{4}\b", head):
            head += process.stderr.readline()
        code = re.search(r"\b([0-9A-F]{4}-[0-9A-F]{4})\b", head).group(1)
        httpx.post(f"{mock_codex.url}/codex/device/decision", data={"user_code": code, "decision": "approve"})
        assert process.wait(timeout=30) == 0
        said = process.stderr.read()
    finally:
        process.kill()
    assert "Logged in ivy" in said and not __import__("os").path.exists(owner_file)  # not the owner's login
    mock_codex.state.requests.clear()
    assert post(f"{team_proxy}/v1/chat/completions", ivy, {"model": "gpt-5.4", "messages": USER_TURN}).status_code == 200
    assert mock_codex.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-ivy-mock"
    nobody = subprocess.run([sys.executable, "-m", "proxy", "login", "--device", "--user", "ghost"], text=True, env=env,
                            capture_output=True, timeout=30)
    assert nobody.returncode == 2 and "no user named 'ghost'" in nobody.stderr


def test_a_limit_for_one_model_only_holds_that_model_and_not_the_others(team_proxy, mock_codex, team_env):
    key = make_user(team_env, "mo", model_limits={"gpt-5.4-mini": {"rpm": 2}})
    device_login(team_proxy, key, mock_codex, "mo@example.com")
    mini = [post(f"{team_proxy}/v1/chat/completions", key, {"model": "gpt-5.4-mini", "messages": USER_TURN})
            for _ in range(3)]
    assert [r.status_code for r in mini] == [200, 200, 429], [r.text for r in mini]
    assert "'gpt-5.4-mini'" in mini[2].json()["error"]["message"]
    other = [post(f"{team_proxy}/v1/chat/completions", key, {"model": "gpt-5.4", "messages": USER_TURN})
             for _ in range(3)]
    assert [r.status_code for r in other] == [200, 200, 200]  # other models are not held by that limit


def test_count_tokens_is_free_and_claude_models_are_limited_like_any_other(mock_codex, auth_path, tmp_path, team_env):
    from proxy.config.settings import Settings
    from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer

    app = MockAnthropicServer()
    app.state = AnthropicMockState()
    key = make_user(team_env, "nia", rpm=1)
    with ServerThread(app) as claude_server:
        settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex",
                            codex_token_url=f"{mock_codex.url}/oauth/token", codex_auth_path=auth_path,
                            anthropic_base_url=claude_server.url,
                            env={**team_env, "ANTHROPIC_API_KEY": app.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
        with ServerThread(create_app(settings)) as proxy:
            client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
            for _ in range(3):  # forwarded to Anthropic for a Claude model, and never counted against the limit
                with pytest.raises(anthropic.APIStatusError) as refused:  # (the mock Anthropic has no count_tokens)
                    client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER_TURN)
                assert refused.value.status_code != 429
            assert client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=USER_TURN).content
            with pytest.raises(anthropic.RateLimitError) as over:
                client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=USER_TURN)
            assert over.value.body["error"]["type"] == "rate_limit_error"


def test_each_member_lists_the_models_their_own_plan_has_and_nobody_elses_list_changes(
        team_proxy, mock_codex, team_env):
    plus = make_user(team_env, "pat")
    pro = make_user(team_env, "quinn")
    device_login(team_proxy, plus, mock_codex, "pat@example.com")
    device_login(team_proxy, pro, mock_codex, "quinn@example.com")
    mock_codex.state.account_models = {"acc-pat-mock": ["gpt-5.4-mini", "gpt-5.5"]}

    def listed(key: str) -> set[str]:
        entries = httpx.get(f"{team_proxy}/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]
        return {e["id"] for e in entries if e["owned_by"] == "codex"}

    assert listed(plus) == {"gpt-5.4-mini", "gpt-5.5"}  # read with pat's own login: pat's plan
    assert {"gpt-6-astra", "nova-1"} <= listed(pro)  # quinn's plan is not narrowed by pat's
    assert listed(plus) == {"gpt-5.4-mini", "gpt-5.5"}
    for_codex = httpx.get(f"{team_proxy}/v1/models", params={"client_version": "0.171.0"},
                          headers={"authorization": f"Bearer {plus}"}).json()
    assert {m["slug"] for m in for_codex["models"]} == {"gpt-5.4-mini", "gpt-5.5"}


def test_a_member_speaks_the_responses_websocket_admitted_response_by_response(team_proxy, mock_codex, team_env):
    key = make_user(team_env, "ria", rpm=2)
    device_login(team_proxy, key, mock_codex, "ria@example.com")
    mock_codex.state.requests.clear()
    client = OpenAI(base_url=f"{team_proxy}/v1", api_key=key, max_retries=0)

    def one(connection) -> list:
        events = []
        for event in connection:
            events.append(event)
            if event.type in ("response.completed", "response.failed", "error"):
                return events
        raise AssertionError("the socket ended early")

    with client.responses.connect() as connection:
        for turn in ("first", "second"):
            connection.response.create(model="gpt-5.4", input=f"{turn} over the socket")
            assert one(connection)[-1].type == "response.completed"
        connection.response.create(model="gpt-5.4", input="third")  # over ria's limit of 2 a minute
        refused = one(connection)[-1]
        assert refused.type == "error" and refused.error.code == "user_rate_limit_exceeded"
    assert [r["headers"].get("chatgpt-account-id") for r in mock_codex.state.requests] == ["acc-ria-mock"] * 2

    other = make_user(team_env, "sol")
    device_login(team_proxy, other, mock_codex, "sol@example.com")
    with OpenAI(base_url=f"{team_proxy}/v1", api_key=other, max_retries=0).responses.connect() as connection:
        connection.response.create(model="gpt-5.4", input="before")
        assert one(connection)[-1].type == "response.completed"
        change(team_env, "sol", disabled=True)  # while the socket is open
        connection.response.create(model="gpt-5.4", input="after")
        refused = one(connection)[-1]
        assert refused.type == "error" and refused.error.code == "invalid_api_key"
