"""What a Responses socket may hold, counted by what it costs (issue 25 items 5 and 6): the idle
deadline moves only for real work, queued messages are bounded in number as well as bytes, a prewarm
takes no room in the shared record, and a socket opened before team mode started is not served after."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from proxy.config.settings import Limits
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.team.test_request_path import make_user

TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


@pytest.fixture
def start(proxy_settings):
    threads = []

    def run(**changes) -> str:
        thread = ServerThread(create_app(replace(proxy_settings, **changes))).start()
        threads.append(thread)
        return thread.url.replace("http", "ws") + "/v1/responses"

    yield run
    for thread in threads:
        thread.stop()


def _until_terminal(socket) -> list[dict]:
    events = []
    while not events or events[-1]["type"] not in TERMINAL:
        events.append(json.loads(socket.recv(timeout=20)))
    return events


def test_acknowledgements_alone_do_not_keep_an_idle_socket_open(start):
    url = start(limits=Limits(websocket_idle_seconds=1.0))
    opened = time.monotonic()
    with ws_client.connect(url) as socket:
        with pytest.raises(ConnectionClosed):
            for _ in range(40):  # 'response.processed' every 0.2 s for 8 s: not work, the deadline stays
                socket.send(json.dumps({"type": "response.processed", "response_id": "resp_x"}))
                time.sleep(0.2)
        assert socket.close_reason == "idle"
    assert time.monotonic() - opened < 5.0


def test_a_flood_queued_behind_a_running_response_is_bounded_in_number(start, mock_codex):
    url = start()
    mock_codex.state.delta_count, mock_codex.state.inter_delta_delay = 20, 0.1  # a 2 s response
    with ws_client.connect(url, max_queue=None) as socket:
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "hi"}))
        for _ in range(5000):  # one byte each: cheap to send, and each would wait its turn
            socket.send("x")
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "again"}))
        frames = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                frames.append(json.loads(socket.recv(timeout=3)))
            except TimeoutError:
                break
    errors = [f for f in frames if f["type"] == "error"]
    codes = {(f.get("error") or {}).get("code") for f in errors}
    print(f"\nerror frames for 5,000 queued one-byte messages: {len(errors)}")
    assert "too_many_queued_messages" in codes
    assert len(errors) <= 40  # before: one 'invalid_json' answer for each of the 5,000 queued messages
    assert [f["type"] for f in frames].count("response.completed") == 1  # the first response finished


def test_a_prewarm_stays_on_its_socket_and_takes_no_room_in_the_shared_record(start, mock_codex):
    url = start()
    with ws_client.connect(url) as socket:
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "hi", "generate": False}))
        prewarm = _until_terminal(socket)[-1]["response"]["id"]
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "go on",
                                "previous_response_id": prewarm}))
        assert _until_terminal(socket)[-1]["type"] == "response.completed"  # chained on its own socket
    http = url.replace("ws", "http", 1).removesuffix("/v1/responses")
    elsewhere = httpx.post(f"{http}/v1/responses", json={"model": "gpt-5.4", "input": "x", "previous_response_id": prewarm},
                           timeout=30)
    assert elsewhere.status_code in (400, 404), elsewhere.text  # it was never put in the app's record


def test_a_socket_opened_before_team_mode_started_is_not_served_after(start, mock_codex, tmp_path):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    url = start(env=env)
    with ws_client.connect(url) as socket:  # no users yet: no key needed
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "hi"}))
        assert _until_terminal(socket)[-1]["type"] == "response.completed"
        make_user(env, "first")  # team mode starts: from now on every request needs a key
        time.sleep(1.2)  # the server notices the new store within a second
        sent = len(mock_codex.state.requests)
        socket.send(json.dumps({"type": "response.create", "model": "gpt-5.4", "input": "still the owner's?"}))
        refusal = json.loads(socket.recv(timeout=10))
        assert refusal["type"] == "error" and "key" in json.dumps(refusal).lower()
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)
    assert len(mock_codex.state.requests) == sent  # nothing sent with the owner's login
