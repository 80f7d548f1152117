"""Chat Completions SSE → :mod:`proxy.hub.events`, for clients of other formats (pure, incremental).

Chat clients never use this: their answer is relayed byte for byte. A Responses or Messages client
reaching an OpenAI-compatible upstream gets the same neutral events as from any other vendor.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import UpstreamFailure
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

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
           "content_filter": "content_filter"}


class ChatStreamTranslator:
    def __init__(self) -> None:
        self.finished = False
        self._finish: str | None = None
        self._calls: dict[int, int] = {}  # upstream tool call index → our index

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        if self.finished:
            return []
        if event.data == b"[DONE]":
            return self._end()
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), dict):
            self.finished = True
            message = chunk["error"].get("message")
            return [StreamFailure(UpstreamFailure(f"Upstream: {message if isinstance(message, str) else 'error'}"))]
        events: list[AnswerEvent] = []
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events += self._choice(choice)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(_usage(usage))
        return events

    def close(self) -> list[AnswerEvent]:
        if self.finished:
            return []
        if self._finish is not None:
            return self._end()
        self.finished = True
        return [StreamFailure(UpstreamFailure("The upstream stream ended before the answer was complete."))]

    def _end(self) -> list[AnswerEvent]:
        self.finished = True
        if self._finish is None:
            return [StreamFailure(UpstreamFailure("The upstream stream ended without a finish reason."))]
        return []

    def _choice(self, choice: dict[str, Any]) -> list[AnswerEvent]:
        events: list[AnswerEvent] = []
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            upstream_index = call.get("index", 0)
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            if upstream_index not in self._calls:
                self._calls[upstream_index] = len(self._calls)
                events.append(ToolCallStart(self._calls[upstream_index], str(call.get("id") or f"call_{upstream_index}"),
                                            str(function.get("name") or "")))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                events.append(ToolCallArguments(self._calls[upstream_index], arguments))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and self._finish is None:
            self._finish = _FINISH.get(reason, "stop")
            events.append(Finish(self._finish))
        return events


def _usage(usage: dict[str, Any]) -> Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion),
                 int(cached) if isinstance(cached, int) else None, int(reasoning) if isinstance(reasoning, int) else None)
