"""End to end: real clients (openai SDK, LangChain, raw HTTP) → subrelay → mock Codex server.

Both servers are real uvicorn servers on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import replace

import httpx
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, AuthenticationError, OpenAI
from pydantic import BaseModel

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

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


class _DrainingUpstream:
    """A raw asyncio Codex-like upstream that writes only as fast as its reader takes the bytes
    (``drain()`` after every write), so ``written`` is exactly what the proxy pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.written = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        frame = (b"event: response.output_text.delta\ndata: " + json.dumps({
            "type": "response.output_text.delta", "item_id": "m", "output_index": 0, "delta": "y" * 4096}).encode() + b"\n\n")
        chunk = f"{len(frame):x}\r\n".encode() + frame + b"\r\n"
        try:
            while self.written < self.total:
                writer.write(chunk)
                await writer.drain()
                self.written += len(frame)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_slow_client_holds_back_the_upstream_instead_of_being_buffered(proxy_settings):
    """100 MB of answer, far more than every socket buffer on the way: a proxy that read ahead of
    its client would pull most of it from the upstream while the client sleeps."""
    upstream = _DrainingUpstream(100 * 2**20)
    settings = replace(proxy_settings, codex_base_url=f"http://127.0.0.1:{upstream.port}")
    body = {"model": "gpt-5.1-codex", "stream": True, "messages": [{"role": "user", "content": "big"}]}
    try:
        with ServerThread(create_app(settings)) as proxy, httpx.stream(
                "POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=30) as response:
            received = 0
            for chunk in response.iter_raw(65536):
                received += len(chunk)
                if received > 256 * 1024:
                    break
            time.sleep(2)  # a client busy elsewhere
            pulled = upstream.written
            assert pulled < 40 * 2**20, f"the proxy pulled {pulled / 2**20:.0f} MB ahead of a client that read 0.25 MB"
    finally:
        upstream.stop()


def test_codex_quota_headers_reach_the_client(proxy_url):
    response = httpx.post(f"{proxy_url}/chat/completions",
                          json={"model": "gpt-5.1-codex", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert response.headers["x-codex-primary-used-percent"] == "12"
    assert response.headers["x-subrelay-route"] == "codex/gpt-5.1-codex"
