"""The hub's answer events → a Responses API stream (and the final Response object).

What the real clients check (fact sheet responses.md §2) is built in: ``response.created`` first,
a strictly increasing ``sequence_number``, ``output_index`` equal to the item's position,
``content_part.added`` before any text delta, ``function_call_arguments.done`` with ``name``,
reasoning as ``reasoning`` items, usage, ``response.incomplete`` for a truncated answer, and the
full ``output`` in the terminal event. The same object folds a non-streaming answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from proxy.errors import ProxyError
from proxy.hub.encoder import AnswerEncoder
from proxy.hub.events import (
    AnswerEvent,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
    Usage,
)
from proxy.hub.model import ModelRequest


def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex


class ResponsesEncoder(AnswerEncoder):
    """Encodes one answer; ``emit=False`` builds only the final object (non-streaming clients)."""

    def __init__(self, request: ModelRequest, response_id: str | None = None, *, emit: bool = True) -> None:
        super().__init__(emit=emit)
        self.id = response_id or new_response_id()
        self._sequence = 0
        self._suffix = self.id[5:21]
        self.output: list[dict[str, Any]] = []
        self._text_item: dict[str, Any] | None = None
        self._reasoning_item: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # event tool index → open function_call item
        self._open_calls: list[int] = []
        body = request.body
        self.response: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
            "model": request.model, "output": self.output, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": body.get("metadata") or {},
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "temperature": request.temperature, "top_p": request.top_p,
            "max_output_tokens": request.max_output_tokens, "previous_response_id": None,
            "reasoning": body.get("reasoning"), "store": body.get("store", True) is not False,
            "text": body.get("text") or {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": None, "user": request.user,
        }

    # -- the stream ---------------------------------------------------------------------------------

    def start(self) -> bytes:
        self._event("response.created", response=self._snapshot())
        self._event("response.in_progress", response=self._snapshot())
        return self._flush()

    def keepalive(self) -> bytes:
        """``response.in_progress`` again: an event the client's idle timer counts (Codex ignores
        SSE comments), sent while the upstream is silent. It carries no output (that could be large)."""
        if self.ended:
            return b""
        self._event("response.in_progress", response={**self.response, "output": []})
        return self._flush()

    def _content(self, event: AnswerEvent) -> None:
        kind = type(event)
        if kind is TextDelta:
            self._text(event.text)
        elif kind is ReasoningDelta:
            self._reasoning(event.text)
        elif kind is ReasoningDone:
            if self._reasoning_item is None:
                self._reasoning("")
            self._reasoning_item["encrypted_content"] = event.encrypted
            self._close_reasoning()
        elif kind is ToolCallStart:
            self._start_call(event)
        elif kind is ToolCallArguments:
            self._arguments(event)

    def _finished(self) -> None:
        """The terminal event: ``response.completed``, or ``response.incomplete`` for a cut answer."""
        self._close_all()
        if self.usage is not None:
            self.response["usage"] = _usage(self.usage)
        if self.finish_reason in ("length", "content_filter"):
            reason = "max_output_tokens" if self.finish_reason == "length" else "content_filter"
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": reason}
            self._event("response.incomplete", response=self._snapshot())
        else:
            self.response["status"] = "completed"
            self._event("response.completed", response=self._snapshot())

    def _failure(self, error: ProxyError) -> None:
        """``response.failed`` carrying the error."""
        self._close_all()
        detail = error.to_dict()["error"]
        self.response["status"] = "failed"
        self.response["error"] = {"code": detail["code"] or "server_error", "message": detail["message"]}
        self._event("response.failed", response=self._snapshot())

    # -- items --------------------------------------------------------------------------------------

    def _text(self, text: str) -> None:
        item = self._text_item
        if item is None:
            self._close_reasoning()
            item = self._text_item = self._add_item({"type": "message", "id": f"msg_{self._suffix}_{len(self.output)}",
                                                     "status": "in_progress", "role": "assistant", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            self._event("response.content_part.added", item_id=item["id"], output_index=item["_index"],
                        content_index=0, part=dict(part))
        item["content"][0]["text"] += text
        self._event("response.output_text.delta", item_id=item["id"], output_index=item["_index"], content_index=0,
                    delta=text, logprobs=[])

    def _reasoning(self, text: str) -> None:
        item = self._reasoning_item
        if item is None:
            self._close_text()
            item = self._reasoning_item = self._add_item({"type": "reasoning", "id": f"rs_{self._suffix}_{len(self.output)}",
                                                          "summary": []})
            part = {"type": "summary_text", "text": ""}
            item["summary"].append(part)
            self._event("response.reasoning_summary_part.added", item_id=item["id"], output_index=item["_index"],
                        summary_index=0, part=dict(part))
        item["summary"][0]["text"] += text
        self._event("response.reasoning_summary_text.delta", item_id=item["id"], output_index=item["_index"],
                    summary_index=0, delta=text)

    def _start_call(self, event: ToolCallStart) -> None:
        self._close_text()
        self._close_reasoning()
        item = self._add_item({"type": "function_call", "id": f"fc_{self._suffix}_{len(self.output)}",
                               "call_id": event.call_id, "name": event.name, "arguments": "", "status": "in_progress"})
        self._calls[event.index] = item
        self._open_calls.append(event.index)

    def _arguments(self, event: ToolCallArguments) -> None:
        item = self._calls.get(event.index)
        if item is None or item["status"] != "in_progress":
            return
        item["arguments"] += event.fragment
        self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=item["_index"],
                    delta=event.fragment)

    def _add_item(self, item: dict[str, Any]) -> dict[str, Any]:
        item["_index"] = len(self.output)
        self.output.append(item)
        self._event("response.output_item.added", output_index=item["_index"], item=_public(item))
        return item

    def _close_text(self) -> None:
        item, self._text_item = self._text_item, None
        if item is None:
            return
        part = item["content"][0]
        self._event("response.output_text.done", item_id=item["id"], output_index=item["_index"], content_index=0,
                    text=part["text"], logprobs=[])
        self._event("response.content_part.done", item_id=item["id"], output_index=item["_index"], content_index=0,
                    part=dict(part))
        self._done(item)

    def _close_reasoning(self) -> None:
        item, self._reasoning_item = self._reasoning_item, None
        if item is None:
            return
        part = item["summary"][0]
        self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=item["_index"],
                    summary_index=0, text=part["text"])
        self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=item["_index"],
                    summary_index=0, part=dict(part))
        self._done(item)

    def _close_all(self) -> None:
        self._close_text()
        self._close_reasoning()
        for index in self._open_calls:
            item = self._calls[index]
            if not item["arguments"]:
                item["arguments"] = "{}"
            self._event("response.function_call_arguments.done", item_id=item["id"], output_index=item["_index"],
                        arguments=item["arguments"], name=item["name"])
            self._done(item)
        self._open_calls.clear()

    def _done(self, item: dict[str, Any]) -> None:
        if "status" in item:
            item["status"] = "completed"
        self._event("response.output_item.done", output_index=item["_index"], item=_public(item))

    # -- framing ------------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [_public(item) for item in self.output]}

    def final_response(self) -> dict[str, Any]:
        return self._snapshot()

    def _event(self, kind: str, **fields: Any) -> None:
        if not self._emit:
            return
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        self._parts.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key != "_index"}


def _usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.total_tokens}
