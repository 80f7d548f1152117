"""The Codex backend's own paths beside ``/v1`` (issue 26 item 4): ``/backend-api/codex/responses`` over HTTP
and WebSocket, ``…/responses/compact`` and ``…/models``, behind exactly the edge of the ``/v1`` routes
(Host and Origin, keys, team members' own logins, body cap, the client's error shape)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from proxy.account.team_member import save_user_login
from proxy.config.settings import Limits
from proxy.server.app import create_app
from proxy.team.context import open_team
from proxy.team.users import add_user
from tests.mock_upstream import ServerThread

NATIVE = "/backend-api/codex"
CLIENT_KEY = "sk-subrelay-client-key-0123456789"
BODY = {"model": "gpt-5.4", "instructions": "Be brief.", "stream": True, "store": False,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "native hi"}]}]}


@pytest.fixture
def start(proxy_settings):
    threads = []

    def run(**changes) -> str:
        thread = ServerThread(create_app(dataclasses.replace(proxy_settings, **changes))).start()
        threads.append(thread)
        return thread.url

    yield run
    for thread in threads:
        thread.stop()


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_native_responses_path_answers_like_v1(start, mock_codex):
    url = start()
    answers = {path: httpx.post(url + path, json=BODY, timeout=30) for path in (f"{NATIVE}/responses", "/v1/responses")}
    for path, answer in answers.items():
        assert answer.status_code == 200, (path, answer.text)
        events = _events(answer.text)
        assert events[-1]["type"] == "response.completed", path
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == \
            "Hello! You said: native hi"
    sent = mock_codex.state.requests[-2]
    assert sent["headers"]["originator"] == "subrelay" and sent["body"]["input"][-1] == BODY["input"][0]


def test_native_models_is_the_codex_catalogue_shape(start, mock_codex):
    url = start()
    answer = httpx.get(f"{url}{NATIVE}/models", params={"client_version": "0.171.0"}, timeout=30)
    assert answer.status_code == 200
    slugs = [entry["slug"] for entry in answer.json()["models"]]
    assert "nova-1" in slugs  # the account's own list, not subrelay's routing table
    bare = httpx.get(f"{url}{NATIVE}/models", timeout=30)  # no client_version: still Codex's shape
    assert bare.status_code == 200 and "models" in bare.json()


def test_native_compact_is_relayed(start, mock_codex):
    url = start()
    answer = httpx.post(f"{url}{NATIVE}/responses/compact", json={**BODY, "stream": False}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json().get("output") is not None


def test_native_websocket_answers_a_response_create(start, mock_codex):
    url = start()
    with ws_client.connect(url.replace("http", "ws") + f"{NATIVE}/responses", open_timeout=10) as socket:
        socket.send(json.dumps({"type": "response.create", **BODY}))
        kinds = []
        while not kinds or kinds[-1] not in ("response.completed", "response.failed", "error"):
            kinds.append(json.loads(socket.recv(timeout=30))["type"])
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert mock_codex.state.requests[-1]["body"]["input"][-1] == BODY["input"][0]


def test_native_paths_have_the_v1_edge(start, mock_codex):
    url = start(api_keys=(CLIENT_KEY,), limits=Limits(max_body_bytes=4096))
    keyed = {"Authorization": f"Bearer {CLIENT_KEY}"}
    path = f"{url}{NATIVE}/responses"
    missing = httpx.post(path, json=BODY, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{url}{NATIVE}/models", timeout=30).status_code == 401
    assert httpx.post(path, json=BODY, headers=keyed, timeout=30).status_code == 200
    host = httpx.post(path, json=BODY, headers={**keyed, "Host": "evil.example"}, timeout=30)
    assert host.status_code == 403 and host.json()["error"]["code"] == "host_not_allowed"
    origin = httpx.post(path, json=BODY, headers={**keyed, "Origin": "https://evil.example"}, timeout=30)
    assert origin.status_code == 403 and origin.json()["error"]["code"] == "origin_not_allowed"
    big = httpx.post(path, json={**BODY, "instructions": "x" * 5000}, headers=keyed, timeout=30)
    assert big.status_code == 413
    form = httpx.post(path, content=b"a=1", headers={**keyed, "Content-Type": "application/x-www-form-urlencoded"},
                      timeout=30)
    assert form.status_code == 415
    for headers in ({}, {**keyed, "Origin": "https://evil.example"}):  # the upgrade: refused before a socket opens
        with pytest.raises(InvalidStatus) as refused:
            ws_client.connect(url.replace("http", "ws") + f"{NATIVE}/responses", additional_headers=headers,
                              open_timeout=10)
        assert refused.value.response.status_code in (401, 403)


def test_a_team_member_on_the_native_path_is_signed_with_their_own_login(start, mock_codex, tmp_path):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}

    async def members() -> dict[str, str]:
        team = open_team(env, create=True)
        try:
            _, alice = await add_user(team.store, "alice")
            _, bob = await add_user(team.store, "bob")  # bob has no login of his own
            _, carol = await add_user(team.store, "carol", rpm=1)
            for name in ("alice", "carol"):
                await save_user_login(team, name, mock_codex.state.issue_tokens(account=f"acc-{name}-mock"))
            return {"alice": alice, "bob": bob, "carol": carol}
        finally:
            await team.store.close()

    keys = asyncio.run(members())
    url = start(env=env)
    alice = httpx.post(f"{url}{NATIVE}/responses", json=BODY, headers={"Authorization": f"Bearer {keys['alice']}"},
                       timeout=30)
    assert alice.status_code == 200, alice.text
    assert mock_codex.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-alice-mock"
    bob = httpx.post(f"{url}{NATIVE}/responses", json=BODY, headers={"Authorization": f"Bearer {keys['bob']}"},
                     timeout=30)
    assert bob.status_code == 401 and bob.json()["error"]["code"] == "login_required"  # never the owner's login
    assert len(mock_codex.state.requests) == 1
    carol = [httpx.post(f"{url}{NATIVE}/responses", json=BODY, headers={"Authorization": f"Bearer {keys['carol']}"},
                        timeout=30).status_code for _ in range(2)]
    assert carol == [200, 429]  # her limit of one request a minute holds on this path too
