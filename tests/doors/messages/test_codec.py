"""The Messages codec over recorded transcripts: decoding requests into the hub, and encoding any
vendor's answer as an Anthropic stream — including the bugs users hit in peers (messages.md §5)."""

from __future__ import annotations

import base64
import json
import struct

import orjson
import pytest

from adapters.codex.request import codex_name, to_responses_body
from adapters.codex.response import CodexStreamTranslator
from proxy.errors import BadRequest
from proxy.hub.events import Finish, TextDelta, ToolCallArguments, ToolCallStart
from proxy.hub.model import Reasoning, ToolCall, ToolResult
from proxy.doors.messages.request import SIGNATURE_PREFIX, parse_messages_request
from proxy.doors.messages.stream import MessagesEncoder
from proxy.hub.sse import SSEDecoder
from proxy.doors.messages.token_count import count_input_tokens, image_size
from tests.helpers import fixture_bytes, replay


def decode(**body):
    body.setdefault("model", "gpt-5.5")
    body.setdefault("max_tokens", 1024)
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_messages_request(body, orjson.dumps(body))


def encode_codex(name: str, tools=None) -> list[dict]:
    encoder = MessagesEncoder("gpt-5.5")
    data = encoder.start()
    for event in replay(fixture_bytes(f"codex/{name}.sse"), CodexStreamTranslator(tools)):
        data += encoder.encode([event])
    data += encoder.finish()
    return [json.loads(e.data) | {"_event": e.event} for e in SSEDecoder().feed(data)]


def assert_well_ordered(events: list[dict]) -> None:
    """What Claude Code checks: message_start first; each block start → deltas → stop in index order."""
    assert events[0]["type"] == "message_start"
    open_index, next_index = None, 0
    for event in events[1:]:
        assert event["_event"] == event["type"]
        if event["type"] == "content_block_start":
            assert open_index is None and event["index"] == next_index
            open_index, next_index = event["index"], next_index + 1
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_index
        elif event["type"] == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
    assert open_index is None


# -- answers ------------------------------------------------------------------------------------------

def test_reasoning_then_text_as_thinking_and_text_blocks_with_a_replayable_signature():
    events = encode_codex("reasoning_text")
    assert_well_ordered(events)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text"]
    signature = next(e["delta"]["signature"] for e in events if e["type"] == "content_block_delta"
                     and e["delta"]["type"] == "signature_delta")
    assert signature == SIGNATURE_PREFIX + "gAAAAABpQ7x"
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"input_tokens": 56, "output_tokens": 88, "cache_read_input_tokens": 64,
                              "cache_creation_input_tokens": 0}
    assert events[-1]["type"] == "message_stop"


@pytest.mark.parametrize("name,calls", [("tool_call", 1), ("parallel_tool_calls", 2)])
def test_tool_calls_end_with_stop_reason_tool_use(name, calls):
    events = encode_codex(name)
    assert_well_ordered(events)
    uses = [e["content_block"] for e in events if e["type"] == "content_block_start"
            and e["content_block"]["type"] == "tool_use"]
    assert len(uses) == calls and uses[0]["input"] == {}
    assert next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_a_tool_call_after_text_still_ends_with_tool_use():
    encoder = MessagesEncoder("m", emit=False)
    encoder.encode([TextDelta("Let me look."), ToolCallStart(0, "call_1", "Read"),
                    ToolCallArguments(0, '{"file_path":"/a"}'), Finish("stop")])
    encoder.finish()
    message = encoder.message()
    assert message["stop_reason"] == "tool_use"
    assert message["content"][1] == {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/a"}}


def test_a_cut_answer_is_max_tokens():
    events = encode_codex("incomplete")
    assert next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("name", ["failed", "error_event", "truncated"])
def test_a_broken_upstream_ends_with_an_error_event_never_a_silent_stop(name):
    events = encode_codex(name)
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "error" and events[-1]["error"]["message"]
    assert not any(e["type"] == "message_stop" for e in events)
    assert_well_ordered(events[:-1])


def test_stop_reason_is_never_null():
    encoder = MessagesEncoder("m", emit=False)
    encoder.encode([TextDelta("hi")])  # no finish reason from the upstream
    encoder.finish()
    assert encoder.message()["stop_reason"] == "end_turn"


def test_long_tool_names_are_shortened_for_codex_and_restored_on_the_way_out():
    long_name = "mcp__" + "very_long_server_name__" * 4 + "tool"
    request = decode(tools=[{"name": long_name, "input_schema": {"type": "object"}}],
                     messages=[{"role": "user", "content": "go"}])
    body = to_responses_body(request, "gpt-5.5", "D")
    assert body["tools"][0]["name"] == codex_name(long_name) and len(codex_name(long_name)) <= 64
    translator = CodexStreamTranslator({codex_name(long_name): long_name})
    from proxy.hub.sse import SSEEvent
    added = {"type": "response.output_item.added", "output_index": 0,
             "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": codex_name(long_name)}}
    assert translator.feed(SSEEvent("response.output_item.added", orjson.dumps(added)))[0].name == long_name


# -- requests -----------------------------------------------------------------------------------------

def test_a_claude_code_turn_decodes_into_the_hub():
    request = decode(
        system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user_abc"},
        thinking={"type": "enabled", "budget_tokens": 10000},
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        tools=[{"name": "Read", "description": "Read a file", "input_schema": {"type": "object",
                "properties": {"file_path": {"type": "string"}}}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Read /tmp/a.txt"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it.", "signature": SIGNATURE_PREFIX + "gAAAA-x"},
                {"type": "thinking", "thinking": "Foreign.", "signature": "EqQBCkYIBxgCKkB..."},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/a.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": [{"type": "text", "text": "no such file"}]}]},
            {"role": "system", "content": "Mid-conversation reminder."},
        ])
    assert request.system == ["You are Claude Code.", "Mid-conversation reminder."]
    assert request.reasoning_effort == "medium" and request.parallel_tool_calls is False
    reasoning = [item for item in request.items if isinstance(item, Reasoning)]
    assert [r.encrypted for r in reasoning] == ["gAAAA-x", None]  # only our own signature is replayable
    result = next(item for item in request.items if isinstance(item, ToolResult))
    assert result.is_error and result.parts[0].text == "no such file"
    call = next(item for item in request.items if isinstance(item, ToolCall))
    assert json.loads(call.arguments) == {"file_path": "/tmp/a.txt"}
    codex = to_responses_body(request, "gpt-5.5", "D")
    kinds = [item.get("type") for item in codex["input"]]
    assert kinds == ["message", "reasoning", "message", "function_call", "function_call_output"]
    assert codex["input"][1]["encrypted_content"] == "gAAAA-x"
    assert not any(item.get("role") == "system" for item in codex["input"])


def test_the_prompt_cache_key_is_stable_across_a_conversation():
    first = decode(metadata={"user_id": "u1"}, messages=[{"role": "user", "content": "plan a trip"}])
    later = decode(metadata={"user_id": "u1"}, messages=[
        {"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "Where?"},
        {"role": "user", "content": "Rome"}])
    other = decode(metadata={"user_id": "u2"}, messages=[{"role": "user", "content": "plan a trip"}])
    assert first.prompt_cache_key == later.prompt_cache_key != other.prompt_cache_key


@pytest.mark.parametrize("body,param", [
    ({"max_tokens": None}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": 5}]}]},
     "messages[0].content[0].input"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
])
def test_bad_requests_name_the_param(body, param):
    with pytest.raises(BadRequest) as caught:
        decode(**body)
    assert caught.value.param == param


# -- count_tokens -------------------------------------------------------------------------------------

def _png(width: int, height: int) -> str:
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height) + b"\x08\x02").decode()


def test_count_tokens_counts_system_messages_tools_and_images():
    text_only = {"messages": [{"role": "user", "content": "x" * 400}]}
    assert 100 <= count_input_tokens(text_only) <= 110
    with_system = {**text_only, "system": "y" * 400}
    with_tools = {**with_system, "tools": [{"name": "Read", "input_schema": {"type": "object"}}]}
    assert count_input_tokens(text_only) < count_input_tokens(with_system) < count_input_tokens(with_tools)
    assert image_size(_png(800, 600)) == (800, 600)
    image = {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
             "media_type": "image/png", "data": _png(800, 600)}}]}]}
    assert count_input_tokens(image) == 4 + 640  # 800×600/750
