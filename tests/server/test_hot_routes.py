"""The model API's POST routes skip Starlette's router (proxy.server.hot_routes); a client must not notice:
errors keep their API's shape and status, other methods and paths are answered as before."""

from __future__ import annotations

import logging

import pytest

from proxy.doors.chat import endpoint as chat_endpoint
from tests.server.test_app import client_for, settings


async def test_a_bug_in_a_model_handler_is_a_500_in_that_apis_shape_and_a_log_line(tmp_path, monkeypatch, caplog):
    def broken(body: bytes):
        raise KeyError("a bug")

    monkeypatch.setattr(chat_endpoint, "parse_chat_request", broken)
    with caplog.at_level(logging.ERROR):
        async with client_for(settings(tmp_path)) as client:
            chat = await client.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": []})
            again = await client.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": []})
    assert chat.status_code == 500 and chat.json()["error"]["type"] == "server_error"
    assert "KeyError" in chat.json()["error"]["message"] and "a bug" not in chat.text
    assert again.status_code == 500  # the connection and the app stay usable
    assert any("unexpected error while handling POST /v1/chat/completions" in r.getMessage() for r in caplog.records)


async def test_a_refused_messages_request_has_anthropics_error_shape(tmp_path):
    async with client_for(settings(tmp_path)) as client:
        answer = await client.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/chat/completions", 405), ("PUT", "/v1/messages", 405), ("GET", "/v1/responses", 405),
    ("POST", "/v1/chat/completion", 404), ("POST", "/v1/nothing", 404),
])
async def test_other_methods_and_paths_are_answered_as_before(tmp_path, method, path, status):
    async with client_for(settings(tmp_path)) as client:
        answer = await client.request(method, path, json={})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert path in error["message"]
    if not path.startswith("/v1/messages"):  # OpenAI's shape (Anthropic's has no code)
        assert error["code"] == ("method_not_allowed" if status == 405 else "not_found")
