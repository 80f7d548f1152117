"""What the mock Codex backend answers: a Responses SSE transcript built from the request.

It follows the fact sheet (shared/research/codex.md §5), quirks included: ``response.completed``
carries an empty ``output`` array by default, so a proxy that relies on it shows nothing.

Behaviour is chosen from the request the way a model would "decide", plus test markers in the last
user message: ``[[fail]]``, ``[[incomplete]]``, ``[[error]]``, ``[[truncate]]`` (stream stops early),
``[[done-only]]`` (no deltas, only ``*.done``/item events), ``[[output-only]]`` (no item events; the
answer only in ``response.completed.output``), ``[[slow]]`` (0.2 s between deltas),
``[[deltas:N]]`` (N text deltas), ``[[parallel]]`` (two tool calls), ``[[calls:N]]`` (an agent loop: call
the first tool again after each tool output until N outputs are in the input, then answer).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson


@dataclass
class Transcript:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delay: float = 0.0  # seconds between delta events
    truncate: bool = False

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        payload = {"type": kind, **payload, "sequence_number": len(self.events)}
        self.events.append((kind, payload))

    def frames(self) -> Iterator[tuple[bytes, bool]]:
        """(SSE frame, is_delta) pairs."""
        for kind, payload in self.events:
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n", kind.endswith(".delta")


def last_user_text(items: list[dict[str, Any]]) -> tuple[str, int, bool]:
    """(text of the last user message, number of images in it, whether the last item is a tool output)."""
    after_tool = bool(items) and items[-1].get("type") == "function_call_output"
    for item in reversed(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item["content"]
            if isinstance(content, str):
                return content, 0, after_tool
            text = "".join(p.get("text", "") for p in content if p.get("type") == "input_text")
            images = sum(1 for p in content if p.get("type") == "input_image")
            return text, images, after_tool
    return "", 0, after_tool


def build_transcript(body: dict[str, Any], *, delta_count: int | None = None, delta_size: int = 8,
                     empty_completed_output: bool = True) -> Transcript:
    items = body.get("input") or []
    text, images, after_tool = last_user_text(items)
    t = Transcript()
    marks = set(re.findall(r"\[\[([a-z-]+)", text))
    wanted = re.search(r"\[\[deltas:(\d+)\]\]", text)
    if wanted:
        delta_count = int(wanted.group(1))
    if "slow" in marks:
        t.delay = 0.2
    t.truncate = "truncate" in marks
    resp_id = "resp_mock" + uuid.uuid4().hex[:12]
    model = body.get("model")
    # As the backend does (fact sheet codex.md §5): the response's model and creation time are on
    # response.created and response.in_progress only, never on the terminal event.
    head = {"id": resp_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
            "output": [], "model": model}
    t.add("response.created", {"response": head})
    t.add("response.in_progress", {"response": head})
    if "error" in marks:
        t.add("error", {"code": "server_error", "message": "The mock backend hit an error."})
        return t
    if "fail" in marks:
        t.add("response.failed", {"response": {"id": resp_id, "status": "failed",
              "error": {"code": "server_error", "message": "The model failed to answer (mock)."}}})
        return t

    output: list[dict[str, Any]] = []
    index = 0
    if (body.get("reasoning") or {}).get("summary"):
        summary = ["Reading the request.", "Planning the answer."]
        _reasoning(t, index, summary, marks)
        output.append({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": s} for s in summary]})
        index += 1

    all_tools = body.get("tools") or []
    tools = [tool for tool in all_tools if tool.get("type", "function") == "function" and tool.get("name")]
    call = re.search(r"\[\[call:([A-Za-z0-9_-]+):(\{.*?\})\]\]", text)
    chain = re.search(r"\[\[calls:(\d+)\]\]", text)
    done = sum(1 for item in items if isinstance(item, dict) and item.get("type") == "function_call_output")
    chained = bool(chain and tools and done < int(chain.group(1)))
    if chained:
        output.append(_chained_call(t, index, tools[0]["name"], done, marks))
    # The mock "decides" like a model: a [[call:NAME:ARGS]] request calls that tool; an API client
    # offering a few function tools gets a call; an agent CLI (many tools, or built-in ones) a reply.
    wants_tool = call is not None or (len(tools) == len(all_tools) and len(tools) <= 3)
    if chained:
        pass  # the answer is that call
    elif tools and wants_tool and body.get("tool_choice") != "none" and not after_tool:
        names = [tool["name"] for tool in tools]
        forced = body.get("tool_choice")
        if isinstance(forced, dict):
            names = [forced["name"]]
        elif call is not None:
            names = [call.group(1)]
        count = 2 if "parallel" in marks and body.get("parallel_tool_calls") else 1
        for n in range(count):
            tool = next(t_ for t_ in tools if t_["name"] == names[n % len(names)])
            args = call.group(2) if call is not None else orjson.dumps(_sample(tool.get("parameters") or {}, text, n)).decode()
            item = {"type": "function_call", "id": f"fc_{n + 1}", "call_id": f"call_mock{n + 1}",
                    "name": tool["name"], "arguments": args}
            _function_call(t, index, item, marks)
            output.append(item)
            index += 1
    else:
        answer = _answer(body, text, images, items, after_tool)
        if delta_count:
            piece = answer or "x"
            answer = (piece * (delta_count * delta_size // len(piece) + 1))[: delta_count * delta_size]
        _message(t, index, answer, delta_size, marks)
        output.append({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": answer, "annotations": []}]})

    if t.truncate:
        return t  # the connection "drops" before response.completed
    usage = {"input_tokens": 37, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 11,
             "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 48}
    if "incomplete" in marks:
        t.add("response.incomplete", {"response": {"id": resp_id, "status": "incomplete",
              "incomplete_details": {"reason": "max_output_tokens"}, "output": [], "usage": usage}})
        return t
    shown = output if ("output-only" in marks or not empty_completed_output) else []
    t.add("response.completed", {"response": {"id": resp_id, "status": "completed", "output": shown,
          "usage": usage}})
    return t


def _chained_call(t: Transcript, index: int, name: str, done: int, marks: set[str]) -> dict[str, Any]:
    item = {"type": "function_call", "id": f"fc_c{done + 1}", "call_id": f"call_chain{done + 1}", "name": name,
            "arguments": orjson.dumps({"step": done + 1}).decode()}
    _function_call(t, index, item, marks)
    return item


def _answer(body: dict[str, Any], text: str, images: int, items: list[dict[str, Any]], after_tool: bool) -> str:
    fmt = ((body.get("text") or {}).get("format") or {})
    if fmt.get("type") == "json_schema":
        return orjson.dumps(_sample(fmt.get("schema") or {}, text, 0)).decode()
    if fmt.get("type") == "json_object":
        return orjson.dumps({"answer": "mock"}).decode()
    if after_tool:
        return f"The tool said: {items[-1].get('output')}"
    clean = re.sub(r"\[\[[^\]]*\]\]", "", text).strip()
    if images:
        return f"I see {images} image(s). You said: {clean}"
    return f"Hello! You said: {clean}"


def _reasoning(t: Transcript, index: int, summary: list[str], marks: set[str]) -> None:
    if "output-only" in marks:
        return
    t.add("response.output_item.added", {"output_index": index, "item": {"type": "reasoning", "id": "rs_1", "summary": []}})
    for n, part in enumerate(summary):
        t.add("response.reasoning_summary_part.added", {"item_id": "rs_1", "output_index": index, "summary_index": n,
              "part": {"type": "summary_text", "text": ""}})
        if "done-only" not in marks:
            t.add("response.reasoning_summary_text.delta", {"item_id": "rs_1", "output_index": index, "summary_index": n, "delta": part})
        t.add("response.reasoning_summary_text.done", {"item_id": "rs_1", "output_index": index, "summary_index": n, "text": part})
    t.add("response.output_item.done", {"output_index": index, "item": {"type": "reasoning", "id": "rs_1",
          "summary": [{"type": "summary_text", "text": s} for s in summary], "encrypted_content": "gAAAA-mock"}})


def _message(t: Transcript, index: int, answer: str, size: int, marks: set[str]) -> None:
    if "output-only" in marks:
        return
    t.add("response.output_item.added", {"output_index": index, "item": {"type": "message", "id": "msg_1", "role": "assistant",
          "status": "in_progress", "content": []}})
    t.add("response.content_part.added", {"item_id": "msg_1", "output_index": index, "content_index": 0,
          "part": {"type": "output_text", "text": "", "annotations": []}})
    if "done-only" not in marks:
        for start in range(0, len(answer), size):
            t.add("response.output_text.delta", {"item_id": "msg_1", "output_index": index, "content_index": 0,
                  "delta": answer[start:start + size]})
    if "truncate" in marks:
        return
    t.add("response.output_text.done", {"item_id": "msg_1", "output_index": index, "content_index": 0, "text": answer})
    t.add("response.content_part.done", {"item_id": "msg_1", "output_index": index, "content_index": 0,
          "part": {"type": "output_text", "text": answer, "annotations": []}})
    t.add("response.output_item.done", {"output_index": index, "item": {"type": "message", "id": "msg_1", "role": "assistant",
          "status": "completed", "content": [{"type": "output_text", "text": answer, "annotations": []}]}})


def _function_call(t: Transcript, index: int, item: dict[str, Any], marks: set[str]) -> None:
    if "output-only" in marks:
        return
    t.add("response.output_item.added", {"output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}})
    args = item["arguments"]
    if "done-only" not in marks:
        for start in range(0, len(args), 5):
            t.add("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index, "delta": args[start:start + 5]})
    t.add("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index, "arguments": args})
    t.add("response.output_item.done", {"output_index": index, "item": {**item, "status": "completed"}})


def _sample(schema: dict[str, Any], text: str, n: int) -> Any:
    """A value that satisfies ``schema`` (the subset tools and response formats use)."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: _value(name, sub, text, n) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items") or {}, text, n)]
    return _value("value", schema, text, n)


def _value(name: str, schema: dict[str, Any], text: str, n: int) -> Any:
    kind = schema.get("type")
    if kind in ("object", "array") or "properties" in schema or "enum" in schema:
        return _sample(schema, text, n)
    if kind == "integer":
        return 1 + n
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    places = re.findall(r"\b(?:in|for|at) ([A-Z][a-z]+)", text)
    if name in ("city", "location", "place") and places:
        return places[n % len(places)]
    return f"{name}-{n + 1}"
