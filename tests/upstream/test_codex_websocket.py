"""The Codex upstream over the backend's WebSocket, end to end against the mock backend's socket."""

from __future__ import annotations

import httpx
import orjson
import pytest

from proxy.config.settings import Settings
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
def ws_backend(mock_codex):
    mock_codex.state.websocket = True
    return mock_codex


def _serve(settings: Settings):
    return ServerThread(create_app(settings))


def _chat(client: httpx.Client, messages: list[dict], tools: list | None = TOOLS) -> dict:
    body = {"model": "gpt-5.5", "messages": messages, **({"tools": tools} if tools else {})}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]


def _chat_loop(client: httpx.Client, turns: int) -> list[dict]:
    """An agent loop: each user turn asks for the tool, the tool answers, the model sums up."""
    messages: list[dict] = [{"role": "system", "content": "You are terse."}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f'turn {turn} [[call:get_weather:{{"city":"Paris"}}]]'})
        answer = _chat(client, messages)
        assert answer["tool_calls"][0]["function"]["name"] == "get_weather"
        messages.append({"role": "assistant", "content": answer.get("content"), "tool_calls": answer["tool_calls"]})
        messages.append({"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": f"18C ({turn})"})
        answer = _chat(client, messages)
        assert answer["content"] == f"The tool said: 18C ({turn})"
        messages.append({"role": "assistant", "content": answer["content"]})
    return messages


def _ws_requests(backend) -> list[dict]:
    return [r for r in backend.state.requests if r.get("transport") == "ws"]


def test_a_chat_agent_loop_sends_only_new_items_on_one_socket(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _chat_loop(client, 3)
    sent = _ws_requests(ws_backend)
    assert len(sent) == 6 and not [r for r in ws_backend.state.requests if r.get("transport") != "ws"]
    assert len({r["connection"] for r in sent}) == 1  # one socket for the conversation
    assert "previous_response_id" not in sent[0]["body"]
    for request in sent[1:]:
        assert request["body"]["previous_response_id"].startswith("resp_")
        # Only what is new: a tool output, or the assistant's summary + the next user turn.
        assert len(request["body"]["input"]) <= 2
    # The backend continued its own items: the reasoning a Chat client cannot carry is in its context.
    assert any(item.get("type") == "reasoning" for item in sent[-1]["expanded"])


def test_the_upgrade_carries_subrelays_own_identity_and_the_v2_beta_header(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _chat(client, [{"role": "user", "content": "hi"}], tools=None)
    headers = ws_backend.state.ws_upgrades[0]["headers"]
    assert headers["openai-beta"] == "responses_websockets=2026-02-06"
    assert headers["originator"] == "subrelay" and headers["user-agent"].startswith("subrelay/")
    assert headers["chatgpt-account-id"] and headers["authorization"].startswith("Bearer ")
    assert "codex_cli_rs" not in orjson.dumps(headers).decode()


def test_a_refused_upgrade_falls_back_to_http_within_the_same_request(mock_codex, proxy_settings):
    assert mock_codex.state.websocket is False  # the mock answers the upgrade with 426
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _chat_loop(client, 1)
    assert [r.get("transport", "http") for r in mock_codex.state.requests] == ["http", "http"] or all(
        r.get("transport") is None for r in mock_codex.state.requests)
    assert len(mock_codex.state.requests) == 2


def _responses_loop(client: httpx.Client, turns: int, stream: bool = False) -> list[dict]:
    """What the Codex CLI does over HTTP: store false, the whole history (its output items included) each turn."""
    history: list[dict] = []
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    for turn in range(turns):
        history.append({"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": f'turn {turn} [[call:get_weather:{{"city":"Oslo"}}]]'}]})
        for _ in range(2):
            response = client.post("/v1/responses", json={
                "model": "gpt-5.5", "instructions": "Be brief.", "input": history, "tools": tools, "store": False,
                "reasoning": {"summary": "auto"}, "prompt_cache_key": "conv-1"})
            assert response.status_code == 200, response.text
            output = response.json()["output"]
            history += output
            calls = [item for item in output if item["type"] == "function_call"]
            if not calls:
                break
            history.append({"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "-3C"})
        assert output[-1]["content"][0]["text"] == "The tool said: -3C"
    return history


def test_a_responses_client_resending_its_history_gets_incremental_turns(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _responses_loop(client, 2)
    sent = _ws_requests(ws_backend)
    assert len(sent) == 4 and len({r["connection"] for r in sent}) == 1
    assert [("previous_response_id" in r["body"]) for r in sent] == [False, True, True, True]
    assert [len(r["body"]["input"]) for r in sent] == [1, 1, 1, 1]


def test_a_messages_client_gets_incremental_turns(ws_backend, proxy_settings):
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    messages: list[dict] = []
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for turn in range(2):
            messages.append({"role": "user", "content": f'turn {turn} [[call:get_weather:{{"city":"Rome"}}]]'})
            for _ in range(2):
                response = client.post("/v1/messages", json={"model": "gpt-5.5", "max_tokens": 100, "system": "Brief.",
                                                             "messages": messages, "tools": tools})
                assert response.status_code == 200, response.text
                content = response.json()["content"]
                messages.append({"role": "assistant", "content": content})
                uses = [block for block in content if block["type"] == "tool_use"]
                if not uses:
                    break
                messages.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": uses[0]["id"], "content": "20C"}]})
            assert content[-1]["text"] == "The tool said: 20C"
    sent = _ws_requests(ws_backend)
    assert len(sent) == 4 and len({r["connection"] for r in sent}) == 1
    assert [("previous_response_id" in r["body"]) for r in sent] == [False, True, True, True]


def test_an_edited_earlier_message_is_sent_in_full_and_answered_correctly(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        messages = _chat_loop(client, 1)
        messages[1] = {"role": "user", "content": "an edited first question"}
        messages.append({"role": "user", "content": '[[call:get_weather:{"city":"Lima"}]]'})
        assert _chat(client, messages)["tool_calls"][0]["function"]["arguments"] == '{"city":"Lima"}'
    last = _ws_requests(ws_backend)[-1]
    assert "previous_response_id" not in last["body"]
    assert last["body"]["input"][0]["content"][0]["text"] == "an edited first question"


def test_a_socket_dying_before_the_answer_is_reopened_and_the_turn_sent_in_full(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        messages = _chat_loop(client, 1)
        ws_backend.state.ws_drop_next = 1  # the next response dies right after response.created
        messages.append({"role": "user", "content": '[[call:get_weather:{"city":"Kyiv"}]]'})
        answer = _chat(client, messages)
        assert answer["tool_calls"][0]["function"]["arguments"] == '{"city":"Kyiv"}'
        messages += [{"role": "assistant", "content": None, "tool_calls": answer["tool_calls"]},
                     {"role": "tool", "tool_call_id": answer["tool_calls"][0]["id"], "content": "5C"}]
        assert _chat(client, messages)["content"] == "The tool said: 5C"
    sent = _ws_requests(ws_backend)
    assert len(sent) == 5  # 2 + the dropped one + its full resend + the next, incremental again
    dropped, resent, after = sent[2], sent[3], sent[4]
    assert "previous_response_id" in dropped["body"] and "previous_response_id" not in resent["body"]
    assert resent["connection"] != dropped["connection"] and after["connection"] == resent["connection"]
    assert "previous_response_id" in after["body"]
    assert ws_backend.state.finished_streams == 4  # one answer per turn: none lost, none twice


def test_a_socket_dying_mid_answer_is_a_broken_stream_and_the_retry_goes_in_full(ws_backend, proxy_settings):
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        ws_backend.state.ws_drop_after_deltas = 1
        body = {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "[[deltas:4]] hi"}]}
        text = client.post("/v1/chat/completions", json=body).text
        assert '"error"' in text and "[DONE]" not in text.split('"error"')[0][-5:]
        retry = client.post("/v1/chat/completions", json={**body, "stream": False})
        assert retry.status_code == 200 and retry.json()["choices"][0]["message"]["content"]
    sent = _ws_requests(ws_backend)
    assert len(sent) == 2 and sent[0]["connection"] != sent[1]["connection"]
    assert "previous_response_id" not in sent[1]["body"]


def test_the_sixty_minute_connection_limit_is_met_by_reconnecting_unseen(ws_backend, proxy_settings):
    ws_backend.state.ws_limit_after = 2
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _chat_loop(client, 2)
    sent = _ws_requests(ws_backend)
    connections = [r["connection"] for r in sent]
    assert len(set(connections)) == 2
    first_on_new = next(r for r in sent if r["connection"] == connections[-1])
    assert "previous_response_id" not in first_on_new["body"]


def test_an_expired_login_on_the_upgrade_is_refreshed_once_and_replayed(ws_backend, proxy_settings):
    ws_backend.state.valid_access.clear()  # the stored access token is no longer accepted
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert _chat(client, [{"role": "user", "content": "hi"}], tools=None)["content"] == "Hello! You said: hi"
    assert ws_backend.state.refresh_calls == 1 and len(_ws_requests(ws_backend)) == 1


def test_a_usage_limit_over_the_socket_reaches_the_client_as_over_http(ws_backend, proxy_settings):
    ws_backend.state.script.append({"status": 429, "body": {"error": {
        "type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "plus",
        "resets_in_seconds": 120}}, "headers": {"x-codex-primary-used-percent": "100"}})
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "usage_limit_reached"


def test_an_overloaded_backend_over_the_socket_is_a_503_server_is_overloaded(ws_backend, proxy_settings):
    ws_backend.state.script.append({"status": 503, "body": {"error": {
        "type": "service_unavailable_error", "code": "server_is_overloaded", "message": "busy"}}})
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "server_is_overloaded"


def test_forcing_the_websocket_refuses_to_fall_back(mock_codex, proxy_settings):
    from dataclasses import replace

    with _serve(replace(proxy_settings, codex_transport="websocket")) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_socket_refused"
    assert mock_codex.state.requests == []


def test_http_transport_never_opens_a_socket(ws_backend, proxy_settings):
    from dataclasses import replace

    with _serve(replace(proxy_settings, codex_transport="http")) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        _chat(client, [{"role": "user", "content": "hi"}], tools=None)
    assert ws_backend.state.ws_upgrades == [] and len(ws_backend.state.requests) == 1


def test_no_token_reaches_a_log_even_at_debug(ws_backend, proxy_settings, caplog, auth_path):
    import logging

    caplog.set_level(logging.DEBUG)
    token = orjson.loads(open(auth_path, "rb").read())["tokens"]["access_token"]
    with _serve(proxy_settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        _chat(client, [{"role": "user", "content": "hi"}], tools=None)
    assert ws_backend.state.ws_upgrades and token not in caplog.text


def test_the_transport_and_socket_bounds_are_read_from_the_environment():
    from proxy.config.settings import settings_from_env

    default = settings_from_env({})
    assert default.codex_transport == "auto" and default.codex_sockets.idle_seconds == 300.0
    chosen = settings_from_env({"SUBRELAY_CODEX_TRANSPORT": "http", "SUBRELAY_CODEX_SOCKETS_PER_LOGIN": "3",
                                "SUBRELAY_CODEX_SOCKETS_TOTAL": "9", "SUBRELAY_CODEX_SOCKET_IDLE_TIMEOUT": "30"})
    assert chosen.codex_transport == "http"
    assert (chosen.codex_sockets.per_login, chosen.codex_sockets.total, chosen.codex_sockets.idle_seconds) == (3, 9, 30.0)


def test_the_codex_cli_over_subrelays_socket_prewarms_and_continues_upstream_with_new_items_only(
        ws_backend, proxy_settings):
    from websockets.sync.client import connect

    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    base = {"model": "gpt-5.5", "instructions": "Be brief.", "tools": tools, "store": False,
            "reasoning": {"summary": "auto"}, "prompt_cache_key": "thread-9"}
    first = [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": '[[call:get_weather:{"city":"Bern"}]]'}]}]

    def create(socket, **fields) -> dict:
        socket.send(orjson.dumps({"type": "response.create", **base, **fields}).decode())
        while True:
            event = orjson.loads(socket.recv())
            if event["type"] in ("response.completed", "response.failed", "error"):
                return event

    with _serve(proxy_settings) as server, connect(server.url.replace("http", "ws") + "/v1/responses") as socket:
        warm = create(socket, input=first, generate=False)
        assert warm["type"] == "response.completed" and warm["response"]["output"] == []
        done = create(socket, input=[], previous_response_id=warm["response"]["id"])
        call = next(item for item in done["response"]["output"] if item["type"] == "function_call")
        done = create(socket, previous_response_id=done["response"]["id"],
                      input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "9C"}])
        assert done["response"]["output"][-1]["content"][0]["text"] == "The tool said: 9C"
    sent = _ws_requests(ws_backend)
    assert [r["body"].get("generate") for r in sent] == [False, None, None]
    assert len({r["connection"] for r in sent}) == 1
    assert sent[1]["body"]["input"] == [] and sent[1]["body"]["previous_response_id"]
    assert len(sent[2]["body"]["input"]) == 1
