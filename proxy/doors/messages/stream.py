"""The hub's answer events → an Anthropic Messages stream (and the final Message), plus the Anthropic
error shape.

The order Claude Code checks is built in (fact sheet messages.md §3, §5): ``message_start`` first;
content blocks strictly in index order, each ``content_block_start`` → deltas → ``content_block_stop``;
one ``message_delta`` with a non-null ``stop_reason`` (``tool_use`` whenever a tool was called, even
after text; ``max_tokens`` for a cut answer) and usage with ``cache_read_input_tokens``; then
``message_stop``. A failure after the start is an ``error`` event, never a silent end.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from proxy.doors.messages.request import SIGNATURE_PREFIX
from proxy.errors import ProxyError
from proxy.hub.encoder import AnswerEncoder
from proxy.hub.events import (
    AnswerEvent,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "invalid_request_error", 413: "request_too_large",
                415: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def anthropic_error(error: ProxyError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` for one of our errors (redacted)."""
    detail = error.to_dict()["error"]
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(error.status_code, "api_error"),
                                       "message": detail["message"]}}


def anthropic_error_body(error: ProxyError) -> bytes:
    return orjson.dumps(anthropic_error(error))


def error_event(error: ProxyError) -> bytes:
    return b"event: error\ndata: " + anthropic_error_body(error) + b"\n\n"


def asked_for_thinking(request: Any) -> bool:
    """Whether the Messages request enabled thinking (``enabled`` or ``adaptive``, not absent or ``disabled``)."""
    thinking = request.body.get("thinking") if isinstance(request.body, dict) else None
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


class MessagesEncoder(AnswerEncoder):
    """Encodes one answer as Anthropic Messages frames; ``emit=False`` builds only the final Message."""

    def __init__(self, model: str, *, emit: bool = True, thinking: bool = True) -> None:
        super().__init__(emit=emit)
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.model = model
        self.thinking = thinking  # thinking blocks only for a request that asked for them, as Anthropic does
        self.content: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the block being streamed
        self._open_call: int | None = None  # its tool call index, when it is a tool_use block
        self._calls: dict[int, dict[str, Any]] = {}
        self._arguments: dict[int, list[str]] = {}

    def start(self) -> bytes:
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                             "cache_creation_input_tokens": 0}}
        self._event("message_start", {"message": message})
        return self._flush()

    def _content(self, event: AnswerEvent) -> None:
        kind = type(event)
        if kind is TextDelta:
            block = self._block("text", {"type": "text", "text": ""})
            block["text"] += event.text
            self._delta({"type": "text_delta", "text": event.text})
        elif not self.thinking and (kind is ReasoningDelta or kind is ReasoningDone):
            return
        elif kind is ReasoningDelta:
            block = self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            block["thinking"] += event.text
            self._delta({"type": "thinking_delta", "thinking": event.text})
        elif kind is ReasoningDone:
            block = self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if event.encrypted:
                block["signature"] = SIGNATURE_PREFIX + event.encrypted
                self._delta({"type": "signature_delta", "signature": block["signature"]})
            self._close()
        elif kind is ToolCallStart:
            self._close()
            block = {"type": "tool_use", "id": event.call_id, "name": event.name, "input": {}}
            self._calls[event.index] = block
            self._arguments[event.index] = []
            self._open_block(block)
            self._open_call = event.index
        elif kind is ToolCallArguments:
            self._arguments.setdefault(event.index, []).append(event.fragment)
            if self._open_call == event.index:  # (arguments for a call already closed are kept, not streamed)
                self._delta({"type": "input_json_delta", "partial_json": event.fragment})

    def _finished(self) -> None:
        self._close()
        for index, block in self._calls.items():
            try:
                parsed = orjson.loads("".join(self._arguments.get(index, ())) or "{}")
            except orjson.JSONDecodeError:
                parsed = {}
            block["input"] = parsed if isinstance(parsed, dict) else {}
        self._event("message_delta", {"delta": {"stop_reason": self.stop_reason(), "stop_sequence": None},
                                      "usage": self._usage()})
        self._event("message_stop", {})

    def _failure(self, error: ProxyError) -> None:
        self._close()
        if self._emit:
            self._parts.append(error_event(error))

    def stop_reason(self) -> str:
        if self.finish_reason in ("length", "content_filter"):
            return _STOP_REASONS[self.finish_reason]
        return "tool_use" if self._calls else _STOP_REASONS.get(self.finish_reason or "stop", "end_turn")

    def message(self) -> dict[str, Any]:
        """The non-streaming answer."""
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": self.content, "stop_reason": self.stop_reason(), "stop_sequence": None,
                "usage": self._usage()}

    def _usage(self) -> dict[str, Any]:
        usage = self.usage
        if usage is None:
            return {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        cached = usage.cached_tokens or 0
        return {"input_tokens": max(0, usage.prompt_tokens - cached), "output_tokens": usage.completion_tokens,
                "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}

    # -- blocks --------------------------------------------------------------------------------------

    def _block(self, kind: str, fresh: dict[str, Any]) -> dict[str, Any]:
        if self._open is not None and self._open["type"] == kind:
            return self._open
        self._close()
        self._open_block(fresh)
        return fresh

    def _open_block(self, block: dict[str, Any]) -> None:
        self.content.append(block)
        self._open = block
        start = {**block, "input": {}} if block["type"] == "tool_use" else dict(block)
        if block["type"] == "text":
            start["text"] = ""
        elif block["type"] == "thinking":
            start["thinking"] = ""
        self._event("content_block_start", {"index": len(self.content) - 1, "content_block": start})

    def _delta(self, delta: dict[str, Any]) -> None:
        self._event("content_block_delta", {"index": len(self.content) - 1, "delta": delta})

    def _close(self) -> None:
        if self._open is None:
            return
        self._event("content_block_stop", {"index": len(self.content) - 1})
        self._open = None
        self._open_call = None

    def _event(self, kind: str, fields: dict[str, Any]) -> None:
        if self._emit:
            self._parts.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n")
