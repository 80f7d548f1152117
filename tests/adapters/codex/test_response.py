"""Codex Responses SSE → Chat Completions events, over recorded-style transcripts."""

from __future__ import annotations

import pytest

from adapters.codex.response import CodexStreamTranslator
from proxy.errors import BadRequest, UpstreamFailure
from proxy.hub.events import Finish, ReasoningDelta, StreamFailure, TextDelta, ToolCallArguments, ToolCallStart, Usage
from tests.helpers import aggregate, fixture_bytes, replay


def run(name: str, chunk_size: int = 7):
    return replay(fixture_bytes(f"codex/{name}.sse"), CodexStreamTranslator(), chunk_size)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
def test_text_is_streamed_delta_by_delta_whatever_the_chunking(chunk_size):
    events = run("text", chunk_size)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo, ", "wörld! 👋"]
    assert events[-2] == Finish("stop")
    assert events[-1] == Usage(prompt_tokens=37, completion_tokens=9, total_tokens=46, cached_tokens=0, reasoning_tokens=0)


def test_empty_completed_output_uses_streamed_text():
    message = aggregate(run("text"))["choices"][0]["message"]
    assert message["content"] == "Hello, wörld! 👋"


def test_reasoning_summary_becomes_reasoning_content_before_the_text():
    events = run("reasoning_text")
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "**Checking units** before converting.\n\nDone."
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(not isinstance(e, ReasoningDelta) for e in events[first_text:])


def test_full_completed_output_does_not_repeat_streamed_text():
    completion = aggregate(run("reasoning_text"))
    assert completion["choices"][0]["message"]["content"] == "42 km is 26.1 miles."
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 64}
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 70}


def test_tool_call_streams_id_and_name_first_then_argument_fragments():
    events = run("tool_call")
    assert events[0] == ToolCallStart(0, "call_Wx1", "get_weather")
    fragments = [e.fragment for e in events if isinstance(e, ToolCallArguments)]
    assert fragments == ['{"ci', 'ty":"Par', 'is"}']
    assert Finish("tool_calls") in events


def test_parallel_tool_calls_get_indexes_in_order_and_are_not_duplicated_by_output():
    completion = aggregate(run("parallel_tool_calls"))
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_A", "get_weather", '{"city":"Oslo"}'),
        ("call_B", "get_time", '{"tz":"CET"}'),
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["choices"][0]["message"]["content"] is None


def test_deltas_without_done_events_and_unknown_events_are_handled():
    completion = aggregate(run("deltas_no_done"))
    assert completion["choices"][0]["message"]["content"] == "Just deltas."


def test_done_events_stand_in_for_missing_deltas():
    completion = aggregate(run("done_only"))
    message = completion["choices"][0]["message"]
    assert message["content"] == "Only the done event carried this."
    assert message["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q":"x"}'}


def test_completed_output_is_used_when_no_item_events_came():
    assert aggregate(run("output_only"))["choices"][0]["message"]["content"] == "From output only."


def test_failed_response_becomes_a_clear_error():
    events = run("failed")
    assert len(events) == 1 and isinstance(events[0], StreamFailure)
    assert isinstance(events[0].error, BadRequest)
    assert "context window" in events[0].error.message


def test_incomplete_for_max_output_tokens_finishes_with_length():
    events = run("incomplete")
    assert TextDelta("The answer is long and") in events
    assert Finish("length") in events


def test_error_event_after_partial_text_fails_the_stream():
    events = run("error_event")
    assert events[0] == TextDelta("Partial")
    assert isinstance(events[-1], StreamFailure) and isinstance(events[-1].error, UpstreamFailure)


def test_stream_that_stops_before_completion_is_reported_not_silently_finished():
    events = run("truncated")
    assert events[0] == TextDelta("Cut off mid")
    assert isinstance(events[-1], StreamFailure)
    assert not any(isinstance(e, Finish) for e in events)


@pytest.mark.parametrize("name", ["text", "reasoning_text", "tool_call", "parallel_tool_calls", "done_only", "error_event"])
def test_a_whole_read_translated_at_once_gives_the_same_events_as_one_event_at_a_time(name):
    """translated_batches hands the translator every event of one read at once (feed_events)."""
    from proxy.hub.sse import SSEDecoder

    events = SSEDecoder().feed(fixture_bytes(f"codex/{name}.sse"))
    one_by_one = CodexStreamTranslator()
    expected = [repr(answer) for event in events for answer in one_by_one.feed(event)]  # errors compare by repr
    assert expected and [repr(answer) for answer in CodexStreamTranslator().feed_events(events)] == expected
