"""Chat Completions ↔ Anthropic Messages translation, both directions, over realistic fixtures."""

from __future__ import annotations

import json

import pytest

from adapters.anthropic.request import JSON_TOOL, to_messages_body
from adapters.anthropic.response import AnthropicStreamTranslator
from proxy.doors.chat.request import parse_chat_request
from proxy.errors import BadRequest, UpstreamOverloaded
from proxy.hub.events import StreamFailure, TextDelta, ToolCallArguments, ToolCallStart
from tests.helpers import aggregate, fixture_bytes, replay


def chat(**body):
    body.setdefault("model", "claude-sonnet-4-5")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(json.dumps(body).encode())


def run(name: str, json_tool: str | None = None, chunk_size: int = 11):
    return replay(fixture_bytes(f"anthropic/{name}.sse"), AnthropicStreamTranslator(json_tool), chunk_size)


# -- request ----------------------------------------------------------------------------------------

def test_agent_turn_translates_to_messages_with_merged_turns_and_tool_results():
    body = to_messages_body(chat(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Metric units."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and the time?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                                     {"type": "image_url", "image_url": "https://example.com/a.png"}]},
        {"role": "user", "content": "Quickly."},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "4C, rain"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "12:00"}]},
    ], tools=[{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
              {"type": "function", "function": {"name": "get_time"}}],
        tool_choice="required", parallel_tool_calls=False, stop="END", temperature=0.3, top_p=0.9, user="u-42"),
        "claude-sonnet-4-5")
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Metric units."}]
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Oslo and the time?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "text", "text": "Quickly."}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4C, rain"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "12:00"}]},  # text parts, joined
    ]
    assert body["tools"][0] == {"name": "get_weather", "description": "Weather",
                                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    assert body["tools"][1]["input_schema"] == {"type": "object", "properties": {}}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u-42"}
    assert body["temperature"] == 0.3 and "top_p" not in body
    assert body["max_tokens"] == 8192 and body["stream"] is True


def test_max_tokens_is_passed_and_thinking_respects_its_constraints():
    body = to_messages_body(chat(max_completion_tokens=20000, reasoning_effort="high", temperature=0.2), "claude-sonnet-4-5")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 19999}
    assert body["max_tokens"] == 20000 and "temperature" not in body
    default = to_messages_body(chat(reasoning_effort="minimal"), "claude-sonnet-4-5")
    assert default["thinking"]["budget_tokens"] == 1024 and default["max_tokens"] > 1024
    assert "thinking" not in to_messages_body(chat(reasoning_effort="low", max_tokens=500), "claude-sonnet-4-5")


def test_thinking_is_off_with_a_forced_tool():
    body = to_messages_body(chat(reasoning_effort="high", tools=[{"type": "function", "function": {"name": "f"}}],
                                 tool_choice={"type": "function", "function": {"name": "f"}}), "claude-sonnet-4-5")
    assert "thinking" not in body and body["tool_choice"] == {"type": "tool", "name": "f"}


def test_json_schema_becomes_a_forced_tool():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = to_messages_body(chat(response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}),
                            "claude-sonnet-4-5")
    assert body["tools"][-1]["name"] == JSON_TOOL and body["tools"][-1]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_tool_choice_none_is_sent_as_none():
    body = to_messages_body(chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none"), "claude-x")
    assert body["tool_choice"] == {"type": "none"}


@pytest.mark.parametrize("messages,param", [
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "user", "content": "and?"}], "messages[1].tool_calls"),
    ([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}], "messages[1].tool_call_id"),
    ([{"role": "system", "content": "only system"}], "messages"),
])
def test_unanswered_or_orphan_tool_calls_are_refused_before_sending(messages, param):
    with pytest.raises(BadRequest) as info:  # while decoding (orphans) or translating (unanswered calls)
        to_messages_body(chat(messages=messages), "claude-sonnet-4-5")
    assert info.value.param == param


# -- response ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 11, 100_000])
def test_thinking_then_text_with_cache_usage(chunk_size):
    completion = aggregate(run("thinking_text", chunk_size=chunk_size))
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == "Convert km to miles."
    assert message["content"] == "42 km ≈ 26.1 miles."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 725, "completion_tokens": 41, "total_tokens": 766,
                                   "prompt_tokens_details": {"cached_tokens": 600}}


def test_parallel_tool_use_gets_openai_indexes_and_empty_args_become_braces():
    events = run("text_then_parallel_tools")
    assert ToolCallStart(0, "toolu_01A", "get_weather") in events
    assert ToolCallStart(1, "toolu_01B", "get_time") in events
    assert ToolCallArguments(1, "{}") in events
    completion = aggregate(events)
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo"}, {}]
    assert completion["choices"][0]["message"]["content"] == "Checking both."
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("name,reason", [("max_tokens", "length"), ("stop_sequence", "stop")])
def test_stop_reasons_map_to_finish_reasons(name, reason):
    assert aggregate(run(name))["choices"][0]["finish_reason"] == reason


def test_structured_output_tool_input_is_the_message_content():
    completion = aggregate(run("structured_output", json_tool=JSON_TOOL))
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"city": "Lima", "temperature": 19.5}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in completion["choices"][0]["message"]


def test_error_mid_stream_ends_with_a_failure_after_the_text():
    events = run("error_midstream")
    assert events[0] == TextDelta("Hel")
    assert isinstance(events[-1], StreamFailure) and isinstance(events[-1].error, UpstreamOverloaded)
