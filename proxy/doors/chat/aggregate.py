"""Folding :mod:`proxy.hub.events` into one non-streaming ``chat.completion`` object."""

from __future__ import annotations

import time
from typing import Any

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


class CompletionAggregator:
    """Collects a response's events; :meth:`result` builds the ``chat.completion`` dict."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._arguments: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.failure: StreamFailure | None = None

    def add(self, events: list[AnswerEvent]) -> None:
        for event in events:
            kind = type(event)
            if kind is TextDelta:
                self._text.append(event.text)
            elif kind is ReasoningDelta:
                self._reasoning.append(event.text)
            elif kind is ToolCallStart:
                self._calls[event.index] = {
                    "id": event.call_id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
                self._arguments.setdefault(event.index, [])
            elif kind is ToolCallArguments:
                self._arguments.setdefault(event.index, []).append(event.fragment)
            elif kind is Finish:
                self.finish_reason = event.reason
            elif kind is Usage:
                self.usage = event
            elif kind is StreamFailure and self.failure is None:
                self.failure = event

    def result(self, completion_id: str, model: str, created: int | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text) or None}
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._calls:
            calls = []
            for index in sorted(self._calls):
                call = self._calls[index]
                call["function"]["arguments"] = "".join(self._arguments.get(index, ()))
                calls.append(call)
            message["tool_calls"] = calls
        elif message["content"] is None:
            message["content"] = ""
        completion: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason or ("tool_calls" if self._calls else "stop"),
                }
            ],
        }
        if self.usage is not None:
            completion["usage"] = self.usage.to_dict()
        return completion
