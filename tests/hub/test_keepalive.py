"""Codex's timing contract on every door: a response head while the upstream is still silent, then a
keep-alive the client's parser counts as an event, and a failure after the head as the format's own
terminal event. The wait and the keep-alive interval are shortened so the tests run in a second."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.hub import keepalive, priming

CODEX = "gpt-5.4"


@pytest.fixture(autouse=True)
def _short_waits(monkeypatch):
    monkeypatch.setattr(keepalive, "HEAD_SECONDS", 0.3)
    monkeypatch.setattr(keepalive, "KEEPALIVE_SECONDS", 0.2)
    monkeypatch.setattr(priming, "PRIME_SECONDS", 0.1)


def _events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def test_responses_head_comes_before_a_slow_codex_backend(proxy_url, mock_codex):
    mock_codex.state.head_delay = 1.0
    with httpx.stream("POST", f"{proxy_url}/responses", json={"model": CODEX, "input": "hi", "stream": True},
                      timeout=10) as response:
        events = _events(response)
    assert response.status_code == 200
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    first_backend = next(i for i, e in enumerate(events) if e.get("response", {}).get("id", "").startswith("resp_mock"))
    assert kinds[2:first_backend].count("response.in_progress") >= 2  # keep-alives while the backend said nothing
    assert kinds[-1] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hello! You said: hi"


def test_responses_keepalive_is_an_event_during_upstream_silence(proxy_url, mock_codex):
    mock_codex.state.silence = 1.0
    with httpx.stream("POST", f"{proxy_url}/responses", json={"model": CODEX, "input": "hi", "stream": True},
                      timeout=10) as response:
        kinds = [event["type"] for event in _events(response)]
    first_delta = kinds.index("response.output_text.delta")
    assert kinds[:first_delta].count("response.in_progress") >= 3  # the backend's own one, then keep-alives
    assert kinds[-1] == "response.completed"


def test_an_error_before_the_head_wait_is_still_an_http_status(proxy_url, mock_codex):
    mock_codex.state.script = [{"status": 503, "body": {"error": {"code": "server_is_overloaded", "message": "busy"}}}]
    response = httpx.post(f"{proxy_url}/responses", json={"model": CODEX, "input": "x", "stream": True}, timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "server_is_overloaded"


def test_an_error_after_the_head_wait_is_response_failed(proxy_url, mock_codex):
    mock_codex.state.head_delay = 0.8
    mock_codex.state.script = [{"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit",
                                                                  "plan_type": "plus", "resets_at": 4102444800}}}]
    with httpx.stream("POST", f"{proxy_url}/responses", json={"model": CODEX, "input": "x", "stream": True},
                      timeout=10) as response:
        events = _events(response)
    assert response.status_code == 200
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "usage_limit_reached"


def test_chat_gets_comments_while_the_upstream_opens(proxy_url, mock_codex):
    mock_codex.state.head_delay = 1.0
    with httpx.stream("POST", f"{proxy_url}/chat/completions", timeout=10,
                      json={"model": CODEX, "messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert lines[0] == ": keep-alive" and lines.count(": keep-alive") >= 2
    text = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                   for line in lines if line.startswith("data: {"))
    assert text == "Hello! You said: hi" and lines[-1] == "data: [DONE]"


def test_chat_gets_comments_during_upstream_silence(proxy_url, mock_codex):
    mock_codex.state.silence = 1.0
    with httpx.stream("POST", f"{proxy_url}/chat/completions", timeout=10,
                      json={"model": CODEX, "messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert ": keep-alive" in lines and lines[-1] == "data: [DONE]"


def test_messages_gets_pings_while_the_upstream_opens(proxy_url, mock_codex):
    mock_codex.state.head_delay = 1.0
    with httpx.stream("POST", f"{proxy_url}/messages", timeout=10,
                      json={"model": CODEX, "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as response:
        kinds = [event["type"] for event in _events(response)]
    assert response.status_code == 200
    assert kinds[:2] == ["ping", "ping"] and "message_start" in kinds and kinds[-1] == "message_stop"
