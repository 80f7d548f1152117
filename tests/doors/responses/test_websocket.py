"""The Responses API over WebSocket, with the real openai SDK's ``client.responses.connect()``: several
responses on one socket, ``previous_response_id`` across them, every kind of provider, the edge's
refusals, error frames, and the upstream cancelled when the client closes mid-stream."""

from __future__ import annotations

import json
import logging
import time
import tomllib

import pytest
import websockets.sync.client as ws_client
from openai import OpenAI
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from proxy.config.file import parse_config
from proxy.config.settings import Limits, Settings
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState

CODEX, CLAUDE, KEYED = "gpt-5.4", "claude-sonnet-4-5", "local/llama3"
CLIENT_KEY = "sk-subrelay-client-key-0123456789"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


@pytest.fixture(scope="module")
def _upstreams():
    anthropic, compat = MockAnthropicServer(), MockOpenAIServer()
    with ServerThread(anthropic) as a, ServerThread(compat) as o:
        yield anthropic, a, compat, o


@pytest.fixture
def start_proxy(_upstreams, mock_codex, auth_path, tmp_path):
    """Start subrelay (with the three kinds of upstream) with settings changed as a test asks."""
    anthropic, a_thread, compat, o_thread = _upstreams
    anthropic.state, compat.state = AnthropicMockState(), OpenAIMockState()
    config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{o_thread.url}/v1"\n'
                                        f'api_key = "{compat.state.api_key}"\nmodels = ["llama3"]\n'))
    threads = []

    def start(**changes) -> str:
        settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex",
                            codex_token_url=f"{mock_codex.url}/oauth/token", codex_auth_path=auth_path,
                            anthropic_base_url=a_thread.url, file=config,
                            env={"ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)},
                            **changes)
        thread = ServerThread(create_app(settings)).start()
        threads.append(thread)
        return thread.url

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def proxy(start_proxy) -> str:
    return start_proxy()


def sdk(url: str, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def one_response(connection) -> list:
    """The events of one response, up to and including its terminal event."""
    events = []
    for event in connection:
        events.append(event)
        if event.type in TERMINAL:
            return events
    raise AssertionError(f"the socket ended before a terminal event: {[e.type for e in events]}")


def text_of(events: list) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


@pytest.mark.parametrize("model", [CODEX, CLAUDE, KEYED])
def test_several_responses_on_one_socket_chain_with_previous_response_id(proxy, model):
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=model, input="first turn", instructions="Be brief.")
        first = one_response(connection)
        assert first[0].type == "response.created" and first[-1].type == "response.completed"
        assert text_of(first) and first[-1].response.output_text == text_of(first)
        connection.response.create(model=model, input="second turn", previous_response_id=first[-1].response.id)
        second = one_response(connection)
        assert second[-1].type == "response.completed" and text_of(second)
        assert second[-1].response.id != first[-1].response.id


def test_previous_response_id_expands_the_earlier_turn_upstream(proxy, mock_codex):
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=CODEX, input="remember tangerine")
        first = one_response(connection)
        connection.response.create(model=CODEX, input="what was it?", previous_response_id=first[-1].response.id)
        one_response(connection)
    sent = mock_codex.state.requests[-1]["body"]["input"]
    texts = json.dumps(sent)
    assert "remember tangerine" in texts and "what was it?" in texts  # the whole conversation went upstream
    assert any(item.get("role") == "assistant" for item in sent)


def test_store_false_answers_chain_on_the_same_socket_only(proxy):
    """Codex's way: store=false, then previous_response_id on the same socket."""
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=CODEX, input="turn one", store=False)
        first = one_response(connection)
        connection.response.create(model=CODEX, input="turn two", store=False, previous_response_id=first[-1].response.id)
        assert one_response(connection)[-1].type == "response.completed"
    with sdk(proxy).responses.connect() as other:  # another socket cannot see it (nothing was stored)
        other.response.create(model=CODEX, input="turn three", previous_response_id=first[-1].response.id)
        error = one_response(other)[-1]
    assert error.type == "error" and error.status == 400 and error.error.code == "previous_response_not_found"


def test_a_tool_round_trip_over_the_socket(proxy):
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=CLAUDE, input="Weather in Paris?", tools=[WEATHER])
        first = one_response(connection)
        call = next(item for item in first[-1].response.output if item.type == "function_call")
        connection.response.create(model=CLAUDE, tools=[WEATHER], previous_response_id=first[-1].response.id,
                                   input=[{"type": "function_call_output", "call_id": call.call_id,
                                           "output": "18C and sunny"}])
        second = one_response(connection)
    assert "18C and sunny" in second[-1].response.output_text


def test_unknown_previous_id_is_an_error_frame_and_the_socket_stays_usable(proxy):
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=KEYED, input="hi", previous_response_id="resp_nobody_knows")
        error = one_response(connection)[-1]
        assert error.type == "error" and error.status == 400
        assert error.error.code == "previous_response_not_found" and "resp_nobody_knows" in error.error.message
        connection.response.create(model=KEYED, input="still there?")
        assert one_response(connection)[-1].type == "response.completed"


def test_bad_json_and_unknown_types_get_error_frames(proxy):
    with ws_client.connect(f"{proxy.replace('http', 'ws')}/v1/responses") as socket:
        socket.send("{not json")
        bad = json.loads(socket.recv(timeout=10))
        socket.send(json.dumps({"type": "response.cancel"}))
        unknown = json.loads(socket.recv(timeout=10))
        socket.send(json.dumps({"type": "response.create", "model": "no-such-model-anywhere", "input": "hi"}))
        missing = json.loads(socket.recv(timeout=10))
        socket.send(json.dumps({"type": "response.create", "model": CODEX, "input": "hi"}))
        kinds = []
        while not kinds or kinds[-1] not in TERMINAL:
            kinds.append(json.loads(socket.recv(timeout=10))["type"])
    assert bad["type"] == "error" and bad["status"] == 400 and bad["error"]["code"] == "invalid_json"
    assert unknown["status"] == 400 and unknown["error"]["code"] == "unknown_message_type"
    assert missing["status"] == 404 and missing["error"]["type"] == "invalid_request_error"
    assert kinds[-1] == "response.completed"


def test_an_oversized_message_is_refused_with_an_error_frame(start_proxy):
    url = start_proxy(limits=Limits(max_body_bytes=4096))
    with sdk(url).responses.connect() as connection:
        connection.response.create(model=KEYED, input="x" * 10_000)
        error = one_response(connection)[-1]
        assert error.type == "error" and error.status == 413 and error.error.code == "request_too_large"
        connection.response.create(model=KEYED, input="small")
        assert one_response(connection)[-1].type == "response.completed"


def test_generate_false_prepares_a_response_to_chain_on(proxy, mock_codex):
    with sdk(proxy).responses.connect() as connection:
        connection.send({"type": "response.create", "model": CODEX, "input": "warm up", "generate": False,
                         "store": False})
        warm = one_response(connection)
        assert warm[-1].type == "response.completed" and warm[-1].response.output == []
        connection.response.create(model=CODEX, input="now answer", previous_response_id=warm[-1].response.id,
                                   store=False)
        assert one_response(connection)[-1].type == "response.completed"
    assert len(mock_codex.state.requests) == 1  # the warm-up never went upstream
    assert "warm up" in json.dumps(mock_codex.state.requests[0]["body"]["input"])


def test_a_bad_client_key_refuses_the_handshake(start_proxy):
    url = start_proxy(api_keys=(CLIENT_KEY,))
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(f"{url.replace('http', 'ws')}/v1/responses",
                          additional_headers={"Authorization": "Bearer sk-wrong-key-wrong-key"})
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["type"] == "authentication_error"
    assert b"sk-wrong" not in refused.value.response.body
    with sdk(url, CLIENT_KEY).responses.connect() as connection:  # the right key opens it
        connection.response.create(model=KEYED, input="hi")
        assert one_response(connection)[-1].type == "response.completed"


def test_a_foreign_origin_is_refused(proxy):
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(f"{proxy.replace('http', 'ws')}/v1/responses", origin="https://evil.example")
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"


def test_websockets_off_answers_426_at_once(start_proxy):
    url = start_proxy(api_keys=(CLIENT_KEY,), websockets=False)
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(f"{url.replace('http', 'ws')}/v1/responses")  # no key needed to be told
    response = refused.value.response
    assert response.status_code == 426 and response.headers["connection"].lower() == "close"
    assert json.loads(response.body)["error"]["code"] == "websockets_disabled"
    answer = sdk(url, CLIENT_KEY).responses.create(model=KEYED, input="over http then")  # HTTP still works
    assert answer.status == "completed"


def test_closing_mid_stream_cancels_the_upstream(proxy, mock_codex, caplog):
    mock_codex.state.delta_count, mock_codex.state.inter_delta_delay = 400, 0.02
    caplog.set_level(logging.INFO, logger="subrelay")
    with sdk(proxy).responses.connect() as connection:
        connection.response.create(model=CODEX, input="a long answer please")
        for event in connection:
            if event.type == "response.output_text.delta":
                break  # the stream has started: leave
    deadline = time.monotonic() + 10
    while mock_codex.state.cancelled_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mock_codex.state.cancelled_streams == 1 and mock_codex.state.finished_streams == 0
    assert any("websocket session closed" in r.getMessage() for r in caplog.records)


def test_an_idle_socket_is_closed_between_responses(start_proxy):
    url = start_proxy(limits=Limits(websocket_idle_seconds=0.3))
    with ws_client.connect(f"{url.replace('http', 'ws')}/v1/responses") as socket:
        socket.send(json.dumps({"type": "response.create", "model": KEYED, "input": "hi"}))
        kinds = []
        while not kinds or kinds[-1] not in TERMINAL:
            kinds.append(json.loads(socket.recv(timeout=10))["type"])
        with pytest.raises(ConnectionClosedOK):  # then nothing for longer than the idle deadline
            socket.recv(timeout=10)
    assert kinds[-1] == "response.completed" and socket.close_code == 1000 and socket.close_reason == "idle"
