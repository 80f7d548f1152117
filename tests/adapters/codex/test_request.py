"""Chat Completions → Codex Responses body: what the backend needs, nothing it refuses."""

from __future__ import annotations

import json

import pytest

from adapters.codex.request import (
    DROPPED_PARAMETERS,
    INSTRUCTIONS_DEFAULT,
    split_effort_suffix,
    to_responses_body,
)
from proxy.doors.chat.request import parse_chat_request
from proxy.errors import BadRequest
from tests.helpers import FIXTURES

DEFAULT = "Default instructions."


def chat(**body):
    body.setdefault("model", "gpt-5.1-codex")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(json.dumps(body).encode())


def agent_turn():
    return parse_chat_request((FIXTURES / "chat/agent_turn.json").read_bytes())


def test_full_agent_turn_translates_to_the_fact_sheet_shape():
    body = to_responses_body(agent_turn(), "gpt-5.1-codex", DEFAULT)
    assert body["stream"] is True and body["store"] is False
    assert body["instructions"] == "You are a travel assistant.\n\nPrefer metric units."
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What's the weather in Paris? Here is a photo."},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo+/x==", "detail": "low"},
            {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
        ]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks!"}]},
    ]
    assert body["tools"][0] == {
        "type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    assert body["tools"][1]["parameters"] == {"type": "object", "properties": {}}
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["text"] == {"format": {"type": "json_schema", "name": "weather", "strict": True,
                                       "schema": {"type": "object", "properties": {"temp": {"type": "number"}},
                                                  "required": ["temp"]}}}


def test_parameters_the_backend_refuses_are_dropped():
    body = to_responses_body(agent_turn(), "gpt-5.1-codex", DEFAULT)
    assert not set(DROPPED_PARAMETERS) & set(body)
    assert "max_output_tokens" not in body and "stream_options" not in body


def test_default_instructions_are_injected_without_a_system_message():
    assert to_responses_body(chat(), "gpt-5.1-codex", DEFAULT)["instructions"] == DEFAULT


def test_default_mode_moves_system_text_into_a_leading_developer_message():
    body = to_responses_body(agent_turn(), "gpt-5.1-codex", DEFAULT, INSTRUCTIONS_DEFAULT)
    assert body["instructions"] == DEFAULT
    assert body["input"][0] == {"type": "message", "role": "developer", "content": [
        {"type": "input_text", "text": "You are a travel assistant.\n\nPrefer metric units."}]}


def test_prompt_cache_key_is_stable_across_turns_of_one_conversation():
    first = to_responses_body(chat(messages=[{"role": "user", "content": "plan a trip"}]), "gpt-5.1-codex", DEFAULT)
    later = to_responses_body(chat(messages=[
        {"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "Where to?"},
        {"role": "user", "content": "Rome"}]), "gpt-5.1-codex", DEFAULT)
    other = to_responses_body(chat(messages=[{"role": "user", "content": "something else"}]), "gpt-5.1-codex", DEFAULT)
    assert first["prompt_cache_key"] == later["prompt_cache_key"] != other["prompt_cache_key"]


def test_json_object_response_format_becomes_text_format():
    body = to_responses_body(chat(response_format={"type": "json_object"}), "gpt-5.1-codex", DEFAULT)
    assert body["text"] == {"format": {"type": "json_object"}}


def test_effort_suffix_on_the_model_name_sets_reasoning_effort():
    assert split_effort_suffix("gpt-5.1-codex-high") == ("gpt-5.1-codex", "high")
    assert split_effort_suffix("gpt-5.1-codex-mini") == ("gpt-5.1-codex-mini", None)
    body = to_responses_body(chat(), "gpt-5.1-codex-low", DEFAULT)
    assert body["model"] == "gpt-5.1-codex" and body["reasoning"]["effort"] == "low"


def test_tool_output_without_a_matching_call_is_rejected_before_sending():
    with pytest.raises(BadRequest) as info:  # refused while decoding the request, before any adapter
        request = chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "r"}])
        to_responses_body(request, "gpt-5.1-codex", DEFAULT)
    assert info.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize("body,param", [
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0].content[0]"),
])
def test_inexpressible_requests_get_a_400_naming_the_param(body, param):
    with pytest.raises(BadRequest) as info:
        to_responses_body(chat(**body), "gpt-5.1-codex", DEFAULT)
    assert info.value.param == param
