"""The proof behind incremental turns: continuation() only continues what the client really has.

Property tests over random conversations, echoes and edit sequences (hypothesis), plus the cases that
matter most by name.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings, strategies as st

from proxy.upstream.continuation import Turn, _may_be_left_out, continuation, echo_key, settings_of

BASE = {"model": "gpt-5.5", "instructions": "Be brief.", "tools": [{"type": "function", "name": "f"}],
        "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"},
        "store": False, "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "c1"}

texts = st.text(alphabet="abcxyz ", min_size=0, max_size=6)
call_ids = st.sampled_from(["call_1", "call_2", "call_3"])


def message(role: str, text: str) -> dict:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


input_items = st.one_of(
    st.builds(message, st.sampled_from(["user", "developer", "assistant"]), texts),
    st.builds(lambda c, a: {"type": "function_call", "call_id": c, "name": "f", "arguments": a}, call_ids, texts),
    st.builds(lambda c, o: {"type": "function_call_output", "call_id": c, "output": o}, call_ids, texts),
    # A client's own reasoning item is never byte-equal to one the backend just produced (each blob is
    # unique): the same blob after the output is that output echoed back, which the proof may rely on.
    st.builds(lambda e: {"type": "reasoning", "summary": [], "encrypted_content": "enc-in-" + e}, texts),
)
output_items = st.one_of(
    st.builds(lambda t, n: {**message("assistant", t), "id": f"msg_{n}", "status": "completed"}, texts, st.integers(0, 9)),
    st.builds(lambda c, a, n: {"type": "function_call", "id": f"fc_{n}", "call_id": c, "name": "f", "arguments": a,
                               "status": "completed"}, call_ids, texts, st.integers(0, 9)),
    st.builds(lambda e, n: {"type": "reasoning", "id": f"rs_{n}", "summary": [], "encrypted_content": "enc-" + e},
              texts, st.integers(0, 9)),
)


def echo(output: list[dict], style: str) -> list[dict]:
    """The answer as a client of each door sends it back (translated to the Responses shape)."""
    echoed = []
    for item in output:
        if style == "responses":
            echoed.append(copy.deepcopy(item))
            continue
        if item["type"] == "reasoning":
            continue  # Chat clients cannot carry reasoning
        stripped = {k: v for k, v in item.items() if k not in ("id", "status")}
        if item["type"] == "message":
            text = "".join(p["text"] for p in item["content"])
            if not text:
                continue
            stripped = message("assistant", text)
        echoed.append(stripped)
    return echoed


def canon(items: list[dict]) -> list[tuple]:
    return [echo_key(item) for item in items if not _may_be_left_out(item)]


def sound(turn: Turn, body: dict, delta: list) -> bool:
    """What the backend continues (its input + output + delta) means what the client sent."""
    return settings_of(body) == turn.settings and canon(turn.input + turn.output + delta) == canon(body["input"])


def turn_of(history: list, output: list, rid: str = "resp_1") -> Turn:
    return Turn(settings_of(BASE), copy.deepcopy(history), rid, copy.deepcopy(output))


@settings(max_examples=150, deadline=None)
@given(st.lists(input_items, max_size=6), st.lists(output_items, max_size=4), st.lists(input_items, min_size=1, max_size=3),
       st.sampled_from(["responses", "chat"]))
def test_a_faithful_next_turn_sends_exactly_the_new_items(history, output, new, style):
    turn = turn_of(history, output)
    body = {**BASE, "input": history + echo(output, style) + new}
    delta = continuation(turn, body)
    assert delta is not None and sound(turn, body, delta)
    assert canon(delta) == canon(new)


edits = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 20)),
    st.tuples(st.just("insert"), st.integers(0, 20), input_items),
    st.tuples(st.just("replace"), st.integers(0, 20), input_items),
    st.tuples(st.just("swap"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("setting"), st.sampled_from(["instructions", "model", "tools", "reasoning", "text"])),
)


def apply(body: dict, edit: tuple) -> dict:
    items = list(body["input"])
    kind = edit[0]
    if kind == "setting":
        return {**body, edit[1]: "changed"}
    if not items and kind != "insert":
        return body
    index = edit[1] % (len(items) + (1 if kind == "insert" else 0))
    if kind == "delete":
        del items[index]
    elif kind == "insert":
        items.insert(index, edit[2])
    elif kind == "replace":
        items[index] = edit[2]
    else:
        other = edit[2] % len(items)
        items[index], items[other] = items[other], items[index]
    return {**body, "input": items}


@settings(max_examples=300, deadline=None)
@given(st.lists(input_items, max_size=6), st.lists(output_items, max_size=4), st.lists(input_items, max_size=3),
       st.sampled_from(["responses", "chat"]), st.lists(edits, min_size=1, max_size=4))
def test_after_any_edit_sequence_a_continuation_is_either_refused_or_sound(history, output, new, style, sequence):
    turn = turn_of(history, output)
    body = {**BASE, "input": history + echo(output, style) + new}
    for edit in sequence:
        body = apply(body, edit)
    delta = continuation(turn, body)
    assert delta is None or sound(turn, body, delta)


@settings(max_examples=150, deadline=None)
@given(st.lists(input_items, min_size=1, max_size=6), st.lists(output_items, max_size=3),
       st.lists(input_items, min_size=1, max_size=3), st.integers(0, 20), input_items)
def test_an_edited_earlier_item_always_sends_the_full_input(history, output, new, where, replacement):
    index = where % len(history)
    if echo_key(history[index]) == echo_key(replacement) or history[index] == replacement:
        return
    edited = list(history)
    edited[index] = replacement
    body = {**BASE, "input": edited + echo(output, "responses") + new}
    assert continuation(turn_of(history, output), body) is None


def test_a_dropped_answer_is_not_continued():
    output = [{"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}]
    body = {**BASE, "input": [message("user", "hi"), message("user", "again")]}
    assert continuation(turn_of([message("user", "hi")], output), body) is None


def test_a_reasoning_item_the_backend_never_gave_is_not_continued():
    output = [{"type": "reasoning", "id": "rs_1", "encrypted_content": "enc-a", "summary": []},
              {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}]
    foreign = {"type": "reasoning", "summary": [], "encrypted_content": "enc-other"}
    body = {**BASE, "input": [message("user", "hi"), foreign, output[1],
                              {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]}
    assert continuation(turn_of([message("user", "hi")], output), body) is None


def test_a_new_instruction_or_tool_set_sends_the_full_input():
    history, new = [message("user", "hi")], [message("user", "more")]
    for changed in ({"instructions": "Other."}, {"tools": []}, {"model": "gpt-5.4"}, {"reasoning": {"effort": "high"}}):
        assert continuation(turn_of(history, []), {**BASE, **changed, "input": history + new}) is None


def test_nothing_new_is_sent_in_full_except_after_a_prewarm():
    history = [message("user", "hi")]
    assert continuation(turn_of(history, []), {**BASE, "input": history}) is None
    prewarm = Turn(settings_of(BASE), history, "resp_w", [], prewarm=True)
    assert continuation(prewarm, {**BASE, "input": history}) == []


def test_an_unfinished_response_cannot_be_continued():
    history = [message("user", "hi")]
    assert continuation(turn_of(history, [], rid=""), {**BASE, "input": history + [message("user", "x")]}) is None
    assert continuation(None, {**BASE, "input": history}) is None


def test_transport_fields_may_change_between_turns():
    history, new = [message("user", "hi")], [message("user", "more")]
    body = {**BASE, "input": history + new, "stream_options": {"x": 1}, "client_metadata": {"a": "b"}}
    assert continuation(turn_of(history, []), body) == new
