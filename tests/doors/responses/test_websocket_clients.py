"""The OpenAI Agents SDK's websocket transport against subrelay: a run with a tool round trip goes
over one Responses WebSocket (the proxy logs the session), with tracing off."""

from __future__ import annotations

import asyncio
import logging

import pytest

agents = pytest.importorskip("agents", reason="openai-agents is not installed")
from agents import (  # noqa: E402
    Agent,
    Runner,
    function_tool,
    set_default_openai_client,
    set_default_openai_responses_transport,
    set_tracing_disabled,
)
from openai import AsyncOpenAI  # noqa: E402


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18C and sunny in {city}"


@pytest.fixture
def websocket_agents(proxy_url):
    set_tracing_disabled(True)  # tracing would upload to OpenAI: nothing may leave this machine
    set_default_openai_client(AsyncOpenAI(base_url=proxy_url, api_key="unused", max_retries=0))
    set_default_openai_responses_transport("websocket")
    yield
    set_default_openai_responses_transport("http")


def test_agents_sdk_websocket_transport_runs_a_tool_round_trip(websocket_agents, mock_codex, caplog):
    caplog.set_level(logging.INFO, logger="subrelay")
    agent = Agent(name="weather", instructions="Answer with the tool.", model="gpt-5.4", tools=[get_weather])
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?"))
    assert "18C and sunny" in result.final_output
    bodies = [r["body"] for r in mock_codex.state.requests]
    assert len(bodies) == 2 and bodies[1]["input"][-1]["type"] == "function_call_output"
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("websocket session opened") for m in messages)  # it did not fall back to HTTP
    ws_lines = [m for m in messages if m.startswith("request ") and "method=WS" in m]
    assert len(ws_lines) == 2 and all("status=200" in m for m in ws_lines)
