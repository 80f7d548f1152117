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


def _chat(client: httpx.Client, messages: list[dict]) -> dict:
    response = client.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": messages, "tools": TOOLS})
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
        _chat(client, [{"role": "user", "content": "hi"}])
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
