"""Clients that use the Responses API by default, with their default settings, against subrelay and
the mock Codex backend: the OpenAI Agents SDK and LangChain's ChatOpenAI with a codex model name."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

agents = pytest.importorskip("agents", reason="openai-agents is not installed")
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18C and sunny in {city}"


@pytest.fixture
def agents_client(proxy_url):
    set_tracing_disabled(True)  # tracing would upload to OpenAI: nothing may leave this machine
    set_default_openai_client(AsyncOpenAI(base_url=proxy_url, api_key="unused", max_retries=0))
    yield


def test_agents_sdk_run_with_a_function_tool(agents_client, mock_codex):
    agent = Agent(name="weather", instructions="Answer with the tool.", model="gpt-5.4", tools=[get_weather])
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?"))
    assert "18C and sunny" in result.final_output
    bodies = [r["body"] for r in mock_codex.state.requests]
    assert len(bodies) == 2 and bodies[0]["tools"][0]["name"] == "get_weather"
    assert bodies[1]["input"][-1]["type"] == "function_call_output"


def test_agents_sdk_run_streamed(agents_client):
    agent = Agent(name="weather", instructions="Answer with the tool.", model="gpt-5.4", tools=[get_weather])

    async def run() -> tuple[list[str], str]:
        streamed = Runner.run_streamed(agent, "Weather in Oslo?")
        kinds = [event.type async for event in streamed.stream_events()]
        return kinds, streamed.final_output

    kinds, final = asyncio.run(run())
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert "18C and sunny in" in final


def langchain_model(proxy_url: str) -> ChatOpenAI:
    # Default settings: a "codex" model name makes langchain-openai use the Responses API by itself.
    return ChatOpenAI(model="gpt-5.1-codex", base_url=proxy_url, api_key="unused", max_retries=0)


def test_langchain_defaults_invoke_and_stream(proxy_url, mock_codex):
    model = langchain_model(proxy_url)
    assert "hi" in model.invoke("hi").text
    assert mock_codex.state.requests  # it went through /v1/responses, to the Codex backend
    chunks = list(model.stream("stream please"))
    assert "stream please" in "".join(chunk.text for chunk in chunks)


def test_langchain_defaults_bind_tools(proxy_url):
    @tool
    def lookup_weather(city: str) -> str:
        """Weather for a city."""
        return "rainy"

    message = langchain_model(proxy_url).bind_tools([lookup_weather]).invoke("Weather in Rome?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "lookup_weather"
    assert "city" in message.tool_calls[0]["args"]


class Weather(BaseModel):
    city: str
    temperature: float


def test_langchain_defaults_with_structured_output(proxy_url):
    result = langchain_model(proxy_url).with_structured_output(Weather).invoke("Weather in Lima?")
    assert isinstance(result, Weather)
    json.dumps(result.model_dump())
