"""Encoding events as Chat Completions chunks: the shape OpenAI clients parse."""

from __future__ import annotations

import orjson

from proxy.errors import UpstreamFailure
from proxy.hub.events import Finish, ReasoningDelta, StreamFailure, TextDelta, ToolCallArguments, ToolCallStart, Usage
from proxy.doors.chat.stream import ChunkEncoder


def chunks(data: bytes) -> list[dict]:
    frames = [f for f in data.split(b"\n\n") if f]
    assert all(f.startswith(b"data: ") for f in frames)
    return [orjson.loads(f[6:]) for f in frames if f != b"data: [DONE]"]


def test_all_chunks_share_id_created_and_model_and_first_carries_the_role():
    encoder = ChunkEncoder("chatcmpl-1", "gpt-5.1-codex", include_usage=False, created=1700000000)
    data = encoder.start() + encoder.encode([TextDelta('say "hi"\n'), Finish("stop")]) + encoder.done()
    parsed = chunks(data)
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in parsed} == {
        ("chatcmpl-1", 1700000000, "gpt-5.1-codex", "chat.completion.chunk")
    }
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert parsed[1]["choices"][0]["delta"] == {"content": 'say "hi"\n'}
    assert parsed[2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert data.endswith(b"data: [DONE]\n\n")


def test_tool_call_chunks_follow_the_openai_shape():
    encoder = ChunkEncoder("c", "m", include_usage=False, created=1)
    parsed = chunks(encoder.encode([ToolCallStart(0, "call_1", "f"), ToolCallArguments(0, '{"a":')]))
    assert parsed[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    ]
    assert parsed[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"a":'}}]


def test_usage_chunk_only_when_the_client_asked_for_it():
    usage = Usage(10, 5, 15, cached_tokens=2, reasoning_tokens=1)
    assert ChunkEncoder("c", "m", include_usage=False).encode([usage]) == b""
    parsed = chunks(ChunkEncoder("c", "m", include_usage=True).encode([usage]))
    assert parsed[0]["choices"] == []
    assert parsed[0]["usage"] == {
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1},
    }


def test_reasoning_goes_to_reasoning_content():
    parsed = chunks(ChunkEncoder("c", "m", include_usage=False).encode([ReasoningDelta("hmm")]))
    assert parsed[0]["choices"][0]["delta"] == {"reasoning_content": "hmm"}


def test_a_failure_is_an_error_payload_and_ends_the_stream_without_done():
    encoder = ChunkEncoder("c", "m", include_usage=False)
    data = encoder.encode([StreamFailure(UpstreamFailure("boom")), TextDelta("after")])
    assert orjson.loads(data[6:]) == {"error": {"message": "boom", "type": "upstream_error", "param": None, "code": "bad_gateway"}}
    assert encoder.encode([TextDelta("more")]) == b"" and encoder.done() == b""
