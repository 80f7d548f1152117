"""``/v1/responses`` end to end with the real openai SDK: Codex pass-through, and translation for
Anthropic and OpenAI-compatible keys, against the loopback mocks."""

from __future__ import annotations

import json
import tomllib

import httpx
import pytest
from openai import OpenAI
from pydantic import BaseModel

from proxy.server.app import create_app
from proxy.config.settings import Settings
from proxy.config.file import parse_config
from tests.mock_upstream import ServerThread
from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
# One model per route: the Codex pass-through and the two translated upstreams.
CODEX, CLAUDE, KEYED = "gpt-5.4", "claude-sonnet-4-5", "local/llama3"


class Weather(BaseModel):
    city: str
    temperature: float


@pytest.fixture(scope="module")
def _upstreams():
    anthropic, compat = MockAnthropicServer(), MockOpenAIServer()
    with ServerThread(anthropic) as a, ServerThread(compat) as o:
        yield anthropic, a, compat, o


@pytest.fixture
def proxy(_upstreams, mock_codex, auth_path, tmp_path):
    anthropic, a_thread, compat, o_thread = _upstreams
    anthropic.state, compat.state = AnthropicMockState(), OpenAIMockState()
    config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{o_thread.url}/v1"\n'
                                        f'api_key = "{compat.state.api_key}"\nmodels = ["llama3"]\n'))
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                        codex_auth_path=auth_path, anthropic_base_url=a_thread.url, file=config,
                        env={"ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        yield f"{thread.url}/v1"


def sdk(url: str) -> OpenAI:
    return OpenAI(base_url=url, api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", [CODEX, CLAUDE, KEYED])
def test_create_and_stream_text(proxy, model):
    client = sdk(proxy)
    answer = client.responses.create(model=model, input="hi", instructions="Be brief.")
    assert answer.status == "completed" and "hi" in answer.output_text or answer.output_text.startswith("hello")
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    with client.responses.stream(model=model, input=[{"role": "user", "content": "stream it"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.output_text and final.output and final.output[0].type == "message"


def test_codex_stream_keeps_its_own_events_and_fills_the_empty_completed_output(proxy, mock_codex):
    with httpx.stream("POST", f"{proxy}/responses", json={"model": CODEX, "input": "hi", "stream": True}) as response:
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # the backend's own numbering
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["output"][0]["content"][0]["text"] == "Hello! You said: hi"
    sent = mock_codex.state.requests[-1]["body"]
    assert sent["store"] is False and sent["stream"] is True and sent["instructions"]
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


@pytest.mark.parametrize("model", [CODEX, CLAUDE, KEYED])
def test_a_tool_round_trip(proxy, model):
    client = sdk(proxy)
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)
    second = client.responses.create(model=model, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}])
    assert "18C and sunny" in second.output_text


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_streamed_tool_call_events_carry_names_and_positions(proxy, model):
    with sdk(proxy).responses.stream(model=model, input="Weather in Oslo?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].name == "get_weather"
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.output_index for e in added] == list(range(len(added)))
    assert final.output[-1].type == "function_call"


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_structured_output_with_parse(proxy, model):
    parsed = sdk(proxy).responses.parse(model=model, input="Weather in Lima as JSON", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)


@pytest.mark.parametrize("model", [CODEX, CLAUDE])
def test_an_image_input(proxy, model):
    answer = sdk(proxy).responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": PNG}]}])
    assert "1 image" in answer.output_text


def test_codex_reasoning_summary_and_encrypted_content(proxy):
    answer = sdk(proxy).responses.create(model=CODEX, input="think", reasoning={"effort": "high", "summary": "auto"})
    reasoning = [item for item in answer.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].summary[0].text == "Reading the request."
    assert reasoning[0].encrypted_content  # kept, so the next turn can continue from it


def test_claude_thinking_becomes_a_reasoning_item(proxy):
    with sdk(proxy).responses.stream(model=CLAUDE, input="think", reasoning={"effort": "medium"}) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in kinds
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Considering."


def test_previous_response_id_continues_across_providers(proxy, mock_codex, _upstreams):
    client = sdk(proxy)
    first = client.responses.create(model=CODEX, input="My name is Ada.")
    second = client.responses.create(model=CLAUDE, input="What is my name?", previous_response_id=first.id)
    third = client.responses.create(model=CODEX, input="And again?", previous_response_id=second.id)
    assert second.status == third.status == "completed"
    claude_saw = _upstreams[0].state.requests[-1]["body"]["messages"]
    assert claude_saw[0]["content"][0]["text"] == "My name is Ada."
    assert claude_saw[1]["role"] == "assistant" and "Ada" in claude_saw[1]["content"][0]["text"]
    codex_saw = mock_codex.state.requests[-1]["body"]["input"]
    assert [item.get("role") for item in codex_saw] == ["user", "assistant", "user", "assistant", "user"]
    assert all("id" not in item for item in codex_saw)  # store=false: no server-side ids sent back


def test_an_unknown_previous_response_is_a_400(proxy):
    response = httpx.post(f"{proxy}/responses", json={"model": CODEX, "input": "x", "previous_response_id": "resp_nope"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "previous_response_not_found"
    assert response.json()["error"]["param"] == "previous_response_id"


def test_store_false_is_not_recorded(proxy):
    first = sdk(proxy).responses.create(model=CODEX, input="secret", store=False)
    response = httpx.post(f"{proxy}/responses", json={"model": CODEX, "input": "x", "previous_response_id": first.id})
    assert response.status_code == 400


def test_errors_before_and_after_the_stream_started(proxy, mock_codex):
    mock_codex.state.script = [{"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit",
                                                                  "plan_type": "pro", "resets_in_seconds": 60}}}]
    limited = httpx.post(f"{proxy}/responses", json={"model": CODEX, "input": "x", "stream": True})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "usage_limit_reached"
    with httpx.stream("POST", f"{proxy}/responses", json={"model": CODEX, "input": "x [[deltas:3]] [[truncate]]",
                                                           "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("event:")]
    assert response.status_code == 200 and lines[-1] == "event: response.failed"
    failed = httpx.post(f"{proxy}/responses", json={"model": CODEX, "input": "x [[fail]]"})
    assert failed.status_code == 502


def test_translated_length_cut_is_response_incomplete(proxy, _upstreams):
    _upstreams[0].state.script = []
    with httpx.stream("POST", f"{proxy}/responses", json={"model": KEYED, "input": "x", "stream": True,
                                                           "max_output_tokens": 5}) as response:
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1]["type"] == "response.completed"  # the mock finishes with "stop"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_codex_only_items_are_refused_for_translated_providers(proxy):
    body = {"model": CLAUDE, "input": "x", "tools": [{"type": "web_search"}]}
    response = httpx.post(f"{proxy}/responses", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools[0].type"


@pytest.mark.parametrize("body,param", [
    ({"model": CODEX}, "input"), ({"model": CODEX, "input": 5}, "input"),
    ({"model": CODEX, "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"model": CODEX, "input": "x", "max_output_tokens": "lots"}, "max_output_tokens"),
    ({"model": CODEX, "input": [{"type": "function_call_output", "call_id": "c9", "output": "r"}]}, "input[0].call_id"),
])
def test_bad_requests_are_400s_naming_the_param(proxy, body, param):
    response = httpx.post(f"{proxy}/responses", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_remote_compaction_is_relayed_for_codex_and_refused_for_others(proxy, mock_codex):
    body = {"model": CODEX, "input": [{"role": "user", "content": "a long conversation"}], "instructions": "x"}
    compacted = httpx.post(f"{proxy}/responses/compact", json=body)
    assert compacted.status_code == 200 and compacted.json()["output"][0]["type"] == "compaction"
    assert mock_codex.state.requests[-1]["path"] == "compact"
    refused = httpx.post(f"{proxy}/responses/compact", json={**body, "model": CLAUDE})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_model"


def test_a_401_refreshes_the_login_once_and_replays(proxy, mock_codex):
    mock_codex.state.valid_access.clear()  # the backend no longer accepts the current access token
    answer = sdk(proxy).responses.create(model=CODEX, input="hi")
    assert answer.status == "completed"
    assert mock_codex.state.refresh_calls == 1 and len(mock_codex.state.requests) == 2
