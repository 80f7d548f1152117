"""Anthropic Messages SSE → :mod:`proxy.hub.events`, incrementally (pure; vendors.md §A.6).

Tool calls are numbered 0, 1, 2… in the order they begin (as OpenAI does), not by Anthropic's block
index, which counts text and thinking blocks too. In structured-output mode the forced
``json_response`` tool's input *is* the answer, so its JSON fragments become message text.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import (
    BadRequest,
    ProxyError,
    RateLimited,
    UpstreamFailure,
    UpstreamOverloaded,
)
from proxy.hub.events import (
    AnswerEvent,
    Finish,
    ReasoningDelta,
    StreamFailure,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
    Usage,
)
from proxy.hub.sse import SSEEvent

STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}


class AnthropicStreamTranslator:
    def __init__(self, json_tool: str | None = None) -> None:
        self._json_tool = json_tool
        self._blocks: dict[int, tuple[str, int | None]] = {}  # block index → (kind, tool call index)
        self._arguments_seen: set[int] = set()
        self._tool_count = 0
        self._stop_reason: str | None = None
        self._usage: dict[str, int] = {}
        self.finished = False

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        if self.finished:
            return []
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type") or event.event
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_start":
            return self._start(payload)
        if kind == "content_block_stop":
            return self._stop(payload)
        if kind == "message_start":
            self._merge_usage((payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._stop_reason = (payload.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._merge_usage(payload.get("usage"))
        elif kind == "message_stop":
            return self._finish()
        elif kind == "error":
            self.finished = True
            error = payload.get("error") or {}
            return [StreamFailure(stream_error(error.get("type"), error.get("message")))]
        return []  # ping and anything new

    def close(self) -> list[AnswerEvent]:
        if self.finished:
            return []
        self.finished = True
        return [StreamFailure(UpstreamFailure("The Anthropic stream ended before the message was complete."))]

    def _start(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        block = payload.get("content_block") or {}
        index = payload.get("index", 0)
        kind = block.get("type")
        if kind == "tool_use":
            if block.get("name") == self._json_tool:
                self._blocks[index] = ("json", None)
                return []
            call = self._tool_count
            self._tool_count += 1
            self._blocks[index] = ("tool", call)
            return [ToolCallStart(call, block.get("id", f"toolu_{call}"), block.get("name", ""))]
        self._blocks[index] = (kind or "text", None)
        if kind == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        return []

    def _delta(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(delta["text"])] if delta.get("text") else []
        if kind == "thinking_delta":
            return [ReasoningDelta(delta["thinking"])] if delta.get("thinking") else []
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if not fragment:
                return []
            block_kind, call = self._blocks.get(payload.get("index", 0), ("tool", None))
            if block_kind == "json":
                return [TextDelta(fragment)]
            if call is None:
                return []
            self._arguments_seen.add(call)
            return [ToolCallArguments(call, fragment)]
        return []  # signature_delta and future kinds: nothing for OpenAI clients

    def _stop(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        block_kind, call = self._blocks.get(payload.get("index", 0), ("text", None))
        if block_kind == "tool" and call is not None and call not in self._arguments_seen:
            return [ToolCallArguments(call, "{}")]  # a call with no arguments still needs valid JSON
        return []

    def _finish(self) -> list[AnswerEvent]:
        self.finished = True
        reason = STOP_REASONS.get(self._stop_reason or "end_turn", "stop")
        if self._json_tool and reason == "tool_calls" and not self._tool_count:
            reason = "stop"  # the forced JSON tool was the answer, not a call for the client
        usage = self._usage
        cache_read = usage.get("cache_read_input_tokens", 0)
        prompt = usage.get("input_tokens", 0) + usage.get("cache_creation_input_tokens", 0) + cache_read
        completion = usage.get("output_tokens", 0)
        return [Finish(reason), Usage(prompt, completion, prompt + completion, cached_tokens=cache_read)]

    def _merge_usage(self, usage: Any) -> None:
        # message_delta usage is cumulative: merge (replace), never add.
        if isinstance(usage, dict):
            for key, value in usage.items():
                if isinstance(value, int):
                    self._usage[key] = value


def stream_error(kind: Any, message: Any) -> ProxyError:
    text = f"Anthropic: {message}" if isinstance(message, str) and message else "Anthropic reported an error."
    if kind == "overloaded_error":
        return UpstreamOverloaded(text)
    if kind == "rate_limit_error":
        return RateLimited(text)
    if kind == "invalid_request_error":
        return BadRequest(text)
    return UpstreamFailure(text, code=kind if isinstance(kind, str) else "upstream_error")
