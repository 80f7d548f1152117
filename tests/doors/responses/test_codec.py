"""The Responses codecs over recorded transcripts: the Codex relay (pass-through with fix-ups) and
the encoder that turns any vendor's neutral events into a Responses stream."""

from __future__ import annotations

import json

import orjson
import pytest

from adapters.anthropic.response import AnthropicStreamTranslator
from adapters.codex.passthrough import ResponsesRelay, fix_responses_body, short_id
from proxy.errors import UpstreamFailure
from proxy.hub.events import ToolCallArguments, ToolCallStart
from proxy.doors.responses.request import parse_responses_request
from proxy.doors.responses.stream import ResponsesEncoder
from proxy.hub.sse import SSEDecoder, SSEEvent
from tests.helpers import fixture_bytes, replay


def relay(name: str, chunk_size: int = 13) -> tuple[ResponsesRelay, list[dict]]:
    """Feed a Codex transcript through the relay; return it and the events the client would get."""
    raw, out, decoder, relayed = fixture_bytes(f"codex/{name}.sse"), [], SSEDecoder(), ResponsesRelay()
    for start in range(0, len(raw), chunk_size):
        for event in decoder.feed(raw[start:start + chunk_size]):
            out.append(relayed.feed(event))
    for event in decoder.flush():
        out.append(relayed.feed(event))
    out.append(relayed.close())
    events = [json.loads(e.data) for e in SSEDecoder().feed(b"".join(out))]
    return relayed, events


def encode(name: str, request_body: dict | None = None) -> tuple[ResponsesEncoder, list[dict]]:
    """Anthropic transcript → neutral events → a Responses stream (the translated path)."""
    body = request_body or {"model": "claude-sonnet-4-5", "input": "hi"}
    encoder = ResponsesEncoder(parse_responses_request(body, orjson.dumps(body)))
    data = encoder.start()
    for event in replay(fixture_bytes(f"anthropic/{name}.sse"), AnthropicStreamTranslator()):
        data += encoder.encode([event])
    data += encoder.finish()
    return encoder, [json.loads(e.data) for e in SSEDecoder().feed(data)]


# -- Codex pass-through --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["text", "tool_call", "parallel_tool_calls", "done_only"])  # output: [] in these
@pytest.mark.parametrize("chunk_size", [1, 13, 100_000])
def test_an_empty_completed_output_is_filled_from_the_items(name, chunk_size):
    relayed, events = relay(name, chunk_size)
    completed = events[-1]
    assert completed["type"] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert completed["response"]["output"] == done and done
    assert relayed.final["output"] == done and relayed.failure is None


def test_a_completed_output_the_backend_did_send_is_kept():
    _, events = relay("reasoning_text")
    assert [item["id"] for item in events[-1]["response"]["output"]] == ["rs_r1", "msg_r2"]
    assert "encrypted_content" not in events[-1]["response"]["output"][0]  # as the backend sent it


def test_parallel_calls_keep_their_indices_and_gain_names():
    _, events = relay("parallel_tool_calls")
    names = [e.get("name") for e in events if e["type"] == "response.function_call_arguments.done"]
    assert names == ["get_weather", "get_time"]
    outputs = [item for item in events[-1]["response"]["output"] if item["type"] == "function_call"]
    assert [item["call_id"] for item in outputs] == ["call_A", "call_B"]


def test_other_events_pass_through_byte_for_byte():
    raw = fixture_bytes("codex/reasoning_text.sse")
    relayed, _ = relay("reasoning_text")
    originals = [e for e in SSEDecoder().feed(raw) if e.event.endswith(".delta")]
    again = ResponsesRelay()
    assert all(again.feed(e) == b"event: " + e.event.encode() + b"\ndata: " + e.data + b"\n\n" for e in originals)


@pytest.mark.parametrize("name,code", [("failed", "server_error"), ("error_event", None)])
def test_failures_are_terminal_and_reported(name, code):
    relayed, events = relay(name)
    assert relayed.failure is not None
    assert events[-1]["type"] in ("response.failed", "error")


def test_a_truncated_stream_ends_with_response_failed():
    """Codex reads a broken stream only from ``response.failed`` (an ``error`` event it skips)."""
    relayed, events = relay("truncated")
    assert events[-1]["type"] == "response.failed" and isinstance(relayed.failure, UpstreamFailure)
    assert events[-1]["response"]["error"]["code"] == "bad_gateway"
    assert events[-1]["sequence_number"] > max(e.get("sequence_number", -1) for e in events[:-1])


def test_an_in_stream_overload_becomes_response_failed_with_codex_code():
    event = SSEEvent("error", b'{"type":"error","code":"server_is_overloaded","message":"busy"}')
    relay_ = ResponsesRelay()
    frame = relay_.feed(event)
    payload = json.loads(frame.split(b"data: ", 1)[1])
    assert payload["type"] == "response.failed"
    assert payload["response"]["error"]["code"] == "server_is_overloaded"
    assert relay_.failure.status_code == 503


def test_every_relayed_response_object_carries_created_at_and_model():
    """LiteLLM (the OpenHands SDK's transport) reads ``created_at`` off the final object, and the
    Vercel AI SDK stops after a tool call without ``model`` on ``response.created``: the backend
    sends them on ``response.created`` only (or not at all), so the relay fills them everywhere."""
    created = {"type": "response.created", "sequence_number": 0,
               "response": {"id": "resp_1", "status": "in_progress", "output": [], "model": "gpt-5.5",
                            "created_at": 1765000000, "instructions": "be brief"}}
    bare_progress = {"type": "response.in_progress", "sequence_number": 1,
                     "response": {"id": "resp_1", "status": "in_progress", "output": []}}
    completed = {"type": "response.completed", "sequence_number": 2,
                 "response": {"id": "resp_1", "status": "completed", "output": [], "usage": {"input_tokens": 1}}}
    relay_ = ResponsesRelay("codex/gpt-5.5")
    frames = [relay_.feed(SSEEvent(e["type"], orjson.dumps(e))) for e in (created, bare_progress, completed)]
    sent = [json.loads(f.split(b"data: ", 1)[1]) for f in frames]
    assert sent[1]["response"]["created_at"] == 1765000000 and sent[1]["response"]["model"] == "gpt-5.5"
    final = relay_.final
    assert (final["created_at"], final["model"], final["object"]) == (1765000000, "gpt-5.5", "response")
    assert final["status"] == "completed" and final["usage"] == {"input_tokens": 1}  # the terminal event's own
    assert final["instructions"] == "be brief" and sent[2]["response"] == final

    silent = ResponsesRelay("gpt-5.4")  # a backend that names neither: defaulted, never missing
    first = json.loads(silent.feed(SSEEvent("response.created", orjson.dumps(
        {**created, "response": {"id": "resp_2", "status": "in_progress", "output": []}}))).split(b"data: ", 1)[1])
    silent.feed(SSEEvent("response.completed", orjson.dumps(completed)))
    assert first["response"]["model"] == "gpt-5.4" and isinstance(first["response"]["created_at"], int)
    assert silent.final["model"] == "gpt-5.4" and silent.final["created_at"] == first["response"]["created_at"]


def test_incomplete_is_passed_on():
    relayed, events = relay("incomplete")
    assert events[-1]["type"] == "response.incomplete" and relayed.failure is None


def test_fix_ups_for_the_backend():
    body = {"model": "x", "input": [{"role": "system", "content": "be brief"},
                                    {"type": "function_call", "call_id": "c" * 80, "name": "f", "arguments": "{}"},
                                    {"type": "function_call_output", "call_id": "c" * 80, "output": "ok"}],
            "temperature": 0.3, "max_output_tokens": 5, "metadata": {"a": 1}, "service_tier": "flex",
            "reasoning": {"summary": "auto"}, "stream": False, "store": True}
    fixed = fix_responses_body(body, "gpt-5.5-high", "DEFAULT")
    assert fixed["stream"] is True and fixed["store"] is False and fixed["instructions"] == "DEFAULT"
    assert fixed["model"] == "gpt-5.5" and fixed["reasoning"]["effort"] == "high"
    assert fixed["input"][0] == {"type": "message", "role": "developer", "content": "be brief"}
    assert fixed["input"][1]["call_id"] == fixed["input"][2]["call_id"] == short_id("c" * 80)
    assert len(fixed["input"][1]["call_id"]) <= 64
    assert not {"temperature", "max_output_tokens", "metadata", "service_tier"} & set(fixed)
    assert "reasoning.encrypted_content" in fixed["include"]
    assert body["input"][0]["role"] == "system"  # the client's body is not modified


# -- the translated path ---------------------------------------------------------------------------------

def test_thinking_then_text_as_items_with_the_rules_clients_check():
    encoder, events = encode("thinking_text")
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [(0, "reasoning"), (1, "message")]
    first_delta = next(i for i, e in enumerate(events) if e["type"] == "response.output_text.delta")
    part_added = next(i for i, e in enumerate(events) if e["type"] == "response.content_part.added")
    assert part_added < first_delta
    output = events[-1]["response"]["output"]
    assert output[0]["summary"][0]["text"] == "Convert km to miles."
    assert output[1]["content"][0]["text"] == "42 km ≈ 26.1 miles."
    assert events[-1]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 600


def test_parallel_tool_calls_get_items_with_names_on_arguments_done():
    _, events = encode("text_then_parallel_tools")
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], json.loads(e["arguments"])) for e in done] == [("get_weather", {"city": "Oslo"}), ("get_time", {})]
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]


def test_a_length_cut_is_response_incomplete():
    _, events = encode("max_tokens")
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_error_mid_stream_is_response_failed_after_the_text():
    encoder, events = encode("error_midstream")
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_is_overloaded"  # what Codex reads as overload
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert encoder.failure is not None


def test_arguments_for_interleaved_calls_go_to_their_own_items():
    body = {"model": "m", "input": "hi"}
    encoder = ResponsesEncoder(parse_responses_request(body, b""), emit=False)
    encoder.encode([ToolCallStart(0, "a", "f"), ToolCallStart(1, "b", "g"), ToolCallArguments(0, '{"x":1}'),
                    ToolCallArguments(1, "{}")])
    encoder.finish()
    output = encoder.final_response()["output"]
    assert [(i["call_id"], i["arguments"]) for i in output] == [("a", '{"x":1}'), ("b", "{}")]
