"""End to end: real clients (openai SDK, LangChain, raw HTTP) → subrelay → mock Codex server.

Both servers are real uvicorn servers on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, AuthenticationError, OpenAI
from pydantic import BaseModel

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG_DATA_URL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def client(proxy_url: str) -> OpenAI:
    return OpenAI(base_url=proxy_url, api_key="unused", max_retries=0)


def test_sdk_non_stream_text(proxy_url, mock_codex):
    completion = client(proxy_url).chat.completions.create(
        model="gpt-5.1-codex", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello! You said: hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 48 and completion.usage.prompt_tokens_details.cached_tokens == 8
    sent = mock_codex.state.requests[-1]["body"]
    assert sent["instructions"] and sent["input"][0]["content"] == [{"type": "input_text", "text": "hi"}]


def test_sdk_stream_with_usage(proxy_url):
    chunks = list(client(proxy_url).chat.completions.create(
        model="gpt-5.1-codex", messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "stream me"}],
        stream=True, stream_options={"include_usage": True}, reasoning_effort="low"))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert text == "Hello! You said: stream me"
    assert reasoning == "Reading the request.\n\nPlanning the answer."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1


async def test_async_sdk_stream_and_non_stream(proxy_url):
    aclient = AsyncOpenAI(base_url=proxy_url, api_key="unused", max_retries=0)
    completion = await aclient.chat.completions.create(model="codex/gpt-5.4", messages=[{"role": "user", "content": "a"}])
    assert completion.choices[0].message.content == "Hello! You said: a"
    stream = await aclient.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "b"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello! You said: b"
    await aclient.close()


def test_sdk_tool_round_trip_stream_and_non_stream(proxy_url, mock_codex):
    sdk = client(proxy_url)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = sdk.chat.completions.create(model="gpt-5.1-codex", messages=messages, tools=[WEATHER_TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

    chunks = list(sdk.chat.completions.create(model="gpt-5.1-codex", messages=messages, tools=[WEATHER_TOOL], stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == call.id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}

    messages += [completion.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    answer = sdk.chat.completions.create(model="gpt-5.1-codex", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "The tool said: 18C and sunny"
    sent = mock_codex.state.requests[-1]["body"]["input"]
    assert [item["type"] for item in sent] == ["message", "function_call", "function_call_output"]


def test_sdk_parallel_tool_calls(proxy_url):
    completion = client(proxy_url).chat.completions.create(
        model="gpt-5.1-codex", messages=[{"role": "user", "content": "Weather in Oslo and in Rome [[parallel]]"}],
        tools=[WEATHER_TOOL])
    calls = completion.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Rome"]
    assert len({c.id for c in calls}) == 2


def test_sdk_image_input(proxy_url, mock_codex):
    completion = client(proxy_url).chat.completions.create(model="gpt-5.1-codex", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "high"}}]}])
    assert completion.choices[0].message.content.startswith("I see 1 image(s).")
    image = mock_codex.state.requests[-1]["body"]["input"][0]["content"][1]
    assert image == {"type": "input_image", "image_url": PNG_DATA_URL, "detail": "high"}


def test_sdk_structured_output_parses(proxy_url):
    class Weather(BaseModel):
        city: str
        temperature: float

    parsed = client(proxy_url).beta.chat.completions.parse(
        model="gpt-5.1-codex", messages=[{"role": "user", "content": "Weather in Lima as JSON"}], response_format=Weather)
    assert parsed.choices[0].message.parsed == Weather(city="Lima", temperature=1.5)


def test_sdk_sees_errors_as_exceptions_with_the_message(proxy_url, mock_codex):
    sdk = client(proxy_url)
    mock_codex.state.valid_access.clear()  # the login was revoked upstream
    mock_codex.state.live_refresh.clear()
    with pytest.raises(AuthenticationError, match="codex login"):
        sdk.chat.completions.create(model="gpt-5.1-codex", messages=[{"role": "user", "content": "hi"}])


def test_revoked_access_token_is_refreshed_once_and_the_request_succeeds(proxy_url, mock_codex, auth_path, caplog):
    caplog.set_level(logging.DEBUG)
    old = json.loads(open(auth_path).read())["tokens"]
    mock_codex.state.valid_access.clear()  # the access token was revoked, the refresh token still works
    completion = client(proxy_url).chat.completions.create(model="gpt-5.1-codex", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello! You said: hi"
    assert mock_codex.state.refresh_calls == 1
    new = json.loads(open(auth_path).read())["tokens"]
    assert new["access_token"] != old["access_token"] and new["refresh_token"] != old["refresh_token"]
    for secret in (*old.values(), *new.values()):
        if isinstance(secret, str) and len(secret) > 8 and secret != old.get("account_id"):
            assert secret not in caplog.text


@pytest.mark.parametrize("options", [
    {"model": "gpt-5.4"},
    # langchain-openai sends *codex* models to /v1/responses unless told to use Chat Completions.
    {"model": "gpt-5.1-codex", "use_responses_api": False},
])
def test_langchain_invoke_stream_and_bind_tools(proxy_url, options):
    llm = ChatOpenAI(base_url=proxy_url, api_key="unused", max_retries=0, **options)
    assert llm.invoke("hello there").content == "Hello! You said: hello there"
    streamed = "".join(chunk.content for chunk in llm.stream("streaming please"))
    assert streamed == "Hello! You said: streaming please"

    with_tools = llm.bind_tools([WEATHER_TOOL])
    message = with_tools.invoke("What is the weather in Berlin?")
    assert message.tool_calls[0]["name"] == "get_weather" and message.tool_calls[0]["args"] == {"city": "Berlin"}
    follow_up = with_tools.invoke([HumanMessage("What is the weather in Berlin?"), message,
                                   ToolMessage("5C", tool_call_id=message.tool_calls[0]["id"])])
    assert follow_up.content == "The tool said: 5C"


def test_raw_sse_is_incremental_first_token_before_upstream_finishes(proxy_url):
    # [[slow]]: the mock waits 0.2 s between deltas, so 6 deltas take > 1 s upstream.
    body = {"model": "gpt-5.1-codex", "stream": True,
            "messages": [{"role": "user", "content": "slow one [[slow]] [[deltas:6]]"}]}
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", f"{proxy_url}/chat/completions", json=body, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.monotonic() - started)
            if line == "data: [DONE]":
                break
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] > 0.8  # chunks arrive spread out, not in one burst at the end


def test_client_disconnect_cancels_the_upstream_stream(proxy_url, mock_codex):
    body = {"model": "gpt-5.1-codex", "stream": True,
            "messages": [{"role": "user", "content": "long [[slow]] [[deltas:50]]"}]}
    with httpx.stream("POST", f"{proxy_url}/chat/completions", json=body, timeout=10) as response:
        seen = 0
        for line in response.iter_lines():
            if '"content":"' in line:
                seen += 1
            if seen == 3:
                break
    deadline = time.monotonic() + 3
    while mock_codex.state.cancelled_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mock_codex.state.cancelled_streams == 1
    assert mock_codex.state.finished_streams == 0
