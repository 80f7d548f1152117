"""Claude end to end: the same client code as for Codex, against a mock Anthropic server."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_openai import ChatOpenAI
from openai import OpenAI
from pydantic import BaseModel

from proxy.server.app import create_app
from proxy.config.settings import Settings
from tests.mock_upstream import ServerThread
from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def _anthropic_server():
    app = MockAnthropicServer()
    with ServerThread(app) as thread:
        yield app, thread


@pytest.fixture
def anthropic(_anthropic_server):
    app, thread = _anthropic_server
    app.state = AnthropicMockState()
    return app


@pytest.fixture
def proxy(_anthropic_server, anthropic, tmp_path):
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), anthropic_base_url=_anthropic_server[1].url,
                        env={"ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        yield f"{thread.url}/v1"


def sdk(url):
    return OpenAI(base_url=url, api_key="unused", max_retries=0)


def test_text_stream_and_non_stream_with_usage(proxy, anthropic):
    client = sdk(proxy)
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello! You said: hi"
    assert completion.usage.prompt_tokens == 40 and completion.usage.prompt_tokens_details.cached_tokens == 10
    chunks = list(client.chat.completions.create(model="anthropic/claude-sonnet-4-5", stream=True,
                  stream_options={"include_usage": True}, messages=[{"role": "user", "content": "stream"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello! You said: stream"
    assert chunks[-1].usage.completion_tokens == 12
    sent = anthropic.state.requests[0]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == anthropic.state.api_key
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["user-agent"].startswith("subrelay/")
    assert sent["body"]["system"] == [{"type": "text", "text": "Be brief."}]


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(proxy, stream):
    client = sdk(proxy)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    if stream:
        chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=[WEATHER_TOOL], stream=True))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        call_id, name = deltas[0].id, deltas[0].function.name
        arguments = "".join(d.function.arguments or "" for d in deltas)
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    else:
        message = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=[WEATHER_TOOL]).choices[0].message
        call_id, name, arguments = message.tool_calls[0].id, message.tool_calls[0].function.name, message.tool_calls[0].function.arguments
    assert name == "get_weather" and json.loads(arguments) == {"city": "Oslo"}
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "4C"}]
    answer = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "The tool said: 4C"


def test_parallel_tools_image_structured_output_and_reasoning(proxy):
    client = sdk(proxy)
    calls = client.chat.completions.create(model="claude-sonnet-4-5", tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Oslo and in Rome [[parallel]]"}]).choices[0].message.tool_calls
    assert [c.id for c in calls] == ["toolu_mock1", "toolu_mock2"]

    seen = client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]}])
    assert seen.choices[0].message.content.startswith("I see 1 image(s).")

    class Weather(BaseModel):
        city: str
        temperature: float

    parsed = client.beta.chat.completions.parse(model="claude-sonnet-4-5", response_format=Weather,
                                                messages=[{"role": "user", "content": "Weather in Lima as JSON"}])
    assert parsed.choices[0].message.parsed == Weather(city="Lima", temperature=1.5)

    thought = client.chat.completions.create(model="claude-sonnet-4-5", reasoning_effort="medium",
                                             messages=[{"role": "user", "content": "think"}])
    assert thought.choices[0].message.reasoning_content == "Considering."


def test_langchain_invoke_stream_and_tools(proxy):
    llm = ChatOpenAI(base_url=proxy, api_key="unused", model="claude-sonnet-4-5", max_retries=0)
    assert llm.invoke("hello").content == "Hello! You said: hello"
    assert "".join(c.content for c in llm.stream("streamed")) == "Hello! You said: streamed"
    message = llm.bind_tools([WEATHER_TOOL]).invoke("Weather in Paris?")
    assert message.tool_calls[0]["args"] == {"city": "Paris"}


@pytest.mark.parametrize("status,body,headers,expected,retry", [
    (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, {}, 401, None),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after": "17"}, 429, "17"),
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, {"retry-after": "5"}, 503, "5"),
    (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}, {}, 400, None),
])
def test_upstream_errors_map_to_openai_errors(proxy, anthropic, status, body, headers, expected, retry):
    anthropic.state.script = [{"status": status, "body": body, "headers": headers}]
    response = httpx.post(f"{proxy}/chat/completions", json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == expected
    assert response.headers.get("retry-after") == retry
    assert body["error"]["message"] in response.json()["error"]["message"]
    assert anthropic.state.api_key not in response.text


def test_models_list_claude_and_claude_code_login_is_explained_not_used(tmp_path, _anthropic_server, anthropic):
    (tmp_path / ".credentials.json").write_text('{"claudeAiOauth": {"accessToken": "sk-ant-oat01-secret"}}')
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), anthropic_base_url=_anthropic_server[1].url,
                        env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        response = httpx.post(f"{thread.url}/v1/chat/completions", json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})
        listed = httpx.get(f"{thread.url}/v1/models").json()["data"]
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "Claude Code" in message and "ANTHROPIC_API_KEY" in message and "sk-ant-oat01" not in message
    assert not any(m["owned_by"] == "anthropic" for m in listed)
    assert _anthropic_server[0].state.requests == []


def test_models_include_claude_when_a_key_is_set(proxy):
    listed = {m.id: m.owned_by for m in sdk(proxy).models.list()}
    assert listed["claude-sonnet-4-5"] == "anthropic"


def _listed_claude(url: str, wanted: str, seconds: float = 10) -> list[str]:
    import time

    deadline = time.monotonic() + seconds
    while True:
        ids = [m.id for m in sdk(url).models.list().data if m.owned_by == "anthropic"]
        if wanted in ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.05)


def test_models_lists_what_the_key_can_use_read_page_by_page(_anthropic_server, anthropic, tmp_path):
    """``/v1/models`` lists the Claude models the key's own model list names (all pages of it),
    not a shipped list that goes stale; and such a model answers."""
    anthropic.state.models_page_size = 2  # five models: three pages
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), anthropic_base_url=_anthropic_server[1].url,
                        env={"ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        ids = _listed_claude(f"{thread.url}/v1", "claude-lumen-9")
        answer = sdk(f"{thread.url}/v1").chat.completions.create(
            model="claude-lumen-9", messages=[{"role": "user", "content": "hi"}])
    assert ids == ["claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-sonnet-4-5", "claude-lumen-9"]
    assert answer.choices[0].message.content
    assert anthropic.state.model_list_calls == 3
    assert all(r["path"] != "/v1/models" for r in anthropic.state.requests)  # listing is not a model call


def test_models_falls_back_to_the_shipped_list_when_the_key_list_cannot_be_read(_anthropic_server, anthropic, tmp_path):
    anthropic.state.models_down = True
    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), anthropic_base_url=_anthropic_server[1].url,
                        env={"ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        import time

        deadline = time.monotonic() + 10
        while anthropic.state.model_list_calls < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        ids = _listed_claude(f"{thread.url}/v1", "claude-lumen-9", seconds=0.5)
    assert "claude-lumen-9" not in ids
    assert "claude-sonnet-4-6" in ids and "claude-haiku-4-5" in ids  # the shipped list, current as of 2026


def test_the_anthropic_sdk_lists_and_retrieves_models_in_its_own_shape_and_pages(proxy, anthropic):
    """Claude Code and the Anthropic SDK read ``/v1/models`` as Anthropic's list: typed entries, ``has_more``,
    paging by ``after_id``. Every routable model is there, in the same order as the OpenAI listing."""
    import anthropic as anthropic_sdk

    root = proxy.removesuffix("/v1")
    _listed_claude(proxy, "claude-lumen-9")  # the key's own model list has been read
    openai_ids = [m.id for m in sdk(proxy).models.list().data]
    client = anthropic_sdk.Anthropic(base_url=root, api_key="unused", max_retries=0)
    first = client.models.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    assert first.data[0].type == "model" and first.data[0].display_name == first.data[0].id
    assert [model.id for model in client.models.list(limit=2)] == openai_ids  # auto-paging: every page
    assert client.models.retrieve("claude-lumen-9").id == "claude-lumen-9"
    bad = httpx.get(f"{root}/v1/models", params={"limit": "many"}, headers={"anthropic-version": "2023-06-01"})
    assert bad.status_code == 400
