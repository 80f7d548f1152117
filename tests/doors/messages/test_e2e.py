"""``/v1/messages`` end to end with the real ``anthropic`` SDK and LangChain's ChatAnthropic: Codex models
translated through the hub, Claude models passed through to the (mock) Anthropic API."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool

from proxy.server.app import create_app
from proxy.config.settings import Settings
from tests.mock_upstream import ServerThread
from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CODEX, CLAUDE = "gpt-5.5", "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def _anthropic_server():
    app = MockAnthropicServer()
    with ServerThread(app) as thread:
        yield app, thread


@pytest.fixture
def claude(_anthropic_server):
    _anthropic_server[0].state = AnthropicMockState()
    return _anthropic_server[0]


@pytest.fixture
def proxy(mock_codex, auth_path, claude, _anthropic_server, tmp_path):
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                        codex_auth_path=auth_path, anthropic_base_url=_anthropic_server[1].url,
                        env={"ANTHROPIC_API_KEY": claude.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def sdk(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="client-key-not-forwarded", max_retries=0)


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_create_and_stream(proxy, model):
    client = sdk(proxy)
    message = client.messages.create(model=model, max_tokens=200, system="Be brief.",
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.stop_reason == "end_turn" and message.content[-1].text == "Hello! You said: hi"
    assert message.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": "stream it"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello! You said: stream it" and final.stop_reason == "end_turn"


def test_claude_is_a_pass_through_with_our_key_and_the_clients_headers(proxy, claude):
    sdk(proxy).messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    sent = claude.state.requests[-1]
    assert sent["headers"]["x-api-key"] == claude.state.api_key  # never the client's proxy key
    assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent["body"] == {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "model": CLAUDE}


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_a_tool_round_trip(proxy, model):
    client = sdk(proxy)
    first = client.messages.create(model=model, max_tokens=300, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and "city" in call.input
    second = client.messages.create(model=model, max_tokens=300, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]}])
    assert "18C and sunny" in second.content[-1].text and second.stop_reason == "end_turn"


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_an_image(proxy, model):
    message = sdk(proxy).messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}])
    assert "1 image" in message.content[-1].text


def test_codex_reasoning_comes_back_as_thinking_and_is_continued_next_turn(proxy, mock_codex):
    client = sdk(proxy)
    first = client.messages.create(model=CODEX, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
                                   messages=[{"role": "user", "content": "think"}])
    thinking = first.content[0]
    assert thinking.type == "thinking" and "Reading the request." in thinking.thinking
    client.messages.create(model=CODEX, max_tokens=2000, messages=[
        {"role": "user", "content": "think"},
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": "and now?"}])
    replayed = [item for item in mock_codex.state.requests[-1]["body"]["input"] if item.get("type") == "reasoning"]
    assert replayed and replayed[0]["encrypted_content"] == "gAAAA-mock"
    assert mock_codex.state.requests[0]["body"]["reasoning"]["effort"] == "low"  # 1024-token budget


def test_claude_thinking_streams_as_thinking_blocks(proxy):
    with sdk(proxy).messages.stream(model=CLAUDE, max_tokens=3000, thinking={"type": "enabled", "budget_tokens": 1024},
                                    messages=[{"role": "user", "content": "think"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature


def test_count_tokens_locally_for_codex_and_upstream_for_claude(proxy, claude):
    client = sdk(proxy)
    local = client.messages.count_tokens(model=CODEX, system="s" * 40, messages=[{"role": "user", "content": "x" * 400}])
    assert 105 <= local.input_tokens <= 125
    assert not claude.state.requests
    with pytest.raises(anthropic.APIStatusError):  # the mock Anthropic has no count_tokens: forwarded, not guessed
        client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    assert claude.state.requests[-1]["path"] == "/v1/messages/count_tokens"


def test_errors_have_anthropics_shape(proxy, mock_codex):
    raw = httpx.post(f"{proxy}/v1/messages?beta=true", content=b"{", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["type"] == "error"
    assert raw.json()["error"]["type"] == "invalid_request_error"
    media = httpx.post(f"{proxy}/v1/messages", content=b"{}", headers={"content-type": "text/plain"})
    assert media.status_code == 415 and media.json()["type"] == "error"
    mock_codex.state.script = [{"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit",
                                                                  "plan_type": "plus", "resets_in_seconds": 60}}}]
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk(proxy).messages.create(model=CODEX, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert "Plus plan" in limited.value.body["error"]["message"]


def test_an_error_after_the_stream_started_is_an_error_event(proxy):
    with httpx.stream("POST", f"{proxy}/v1/messages", json={"model": CODEX, "max_tokens": 50, "stream": True,
                      "messages": [{"role": "user", "content": "x [[deltas:3]] [[truncate]]"}]}) as response:
        events = [line for line in response.iter_lines() if line.startswith("event:")]
    assert events[0] == "event: message_start" and events[-1] == "event: error"
    assert "event: message_stop" not in events


def test_an_unroutable_claude_name_says_what_to_set(mock_codex, auth_path, tmp_path):
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_auth_path=auth_path,
                        env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        with pytest.raises(anthropic.NotFoundError) as missing:
            sdk(thread.url).messages.create(model="claude-opus-4-8[1m]", max_tokens=10,
                                            messages=[{"role": "user", "content": "x"}])
    message = missing.value.body["error"]["message"]
    assert "ANTHROPIC_MODEL=gpt-5.5" in message and "ANTHROPIC_API_KEY" in message


def test_langchain_chat_anthropic(proxy):
    model = ChatAnthropic(model=CODEX, base_url=proxy, api_key="unused", max_retries=0, max_tokens=300)
    assert model.invoke("hi").text == "Hello! You said: hi"
    assert "".join(chunk.text for chunk in model.stream("stream please")) == "Hello! You said: stream please"

    @tool
    def lookup_weather(city: str) -> str:
        """Weather for a city."""
        return "rainy"

    message = model.bind_tools([lookup_weather]).invoke("Weather in Rome?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "lookup_weather"
    json.dumps(message.tool_calls[0]["args"])


def test_claude_names_can_be_aliased_to_codex_models(mock_codex, auth_path, tmp_path):
    import tomllib

    from proxy.config.file import parse_config

    config = parse_config(tomllib.loads('[aliases]\n"claude-opus-4-8" = "codex/gpt-5.5"\n'))
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_auth_path=auth_path, file=config,
                        env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        message = sdk(thread.url).messages.create(model="claude-opus-4-8[1m]", max_tokens=10,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert message.content[-1].text == "Hello! You said: hi"
    assert mock_codex.state.requests[-1]["body"]["model"] == "gpt-5.5"


def test_pings_flow_while_the_upstream_is_silent(proxy, monkeypatch):
    import proxy.doors.messages.endpoint as messages_module

    monkeypatch.setattr(messages_module, "PING_SECONDS", 0.05)  # the upstream below pauses 0.2 s per delta
    with httpx.stream("POST", f"{proxy}/v1/messages", json={"model": CODEX, "max_tokens": 50, "stream": True,
                      "messages": [{"role": "user", "content": "x [[deltas:4]] [[slow]]"}]}) as response:
        events = [line for line in response.iter_lines() if line.startswith("event:")]
    assert "event: ping" in events
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"


def test_no_thinking_blocks_when_the_request_asked_for_none(proxy):
    """Codex reasons anyway; an Anthropic client that did not enable thinking gets none, like from Claude."""
    client = sdk(proxy)
    plain = client.messages.create(model=CODEX, max_tokens=2000, messages=[{"role": "user", "content": "think"}])
    assert [block.type for block in plain.content] == ["text"]
    with client.messages.stream(model=CODEX, max_tokens=2000, messages=[{"role": "user", "content": "think"}]) as stream:
        kinds = {event.content_block.type for event in stream if event.type == "content_block_start"}
    assert kinds == {"text"}
    off = client.messages.create(model=CODEX, max_tokens=2000, thinking={"type": "disabled"},
                                 messages=[{"role": "user", "content": "think"}])
    assert [block.type for block in off.content] == ["text"]
