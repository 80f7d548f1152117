"""Responses clients on Codex models: the client's body with only the fix-ups the backend needs,
and the backend's events relayed as they are, except where the backend is known to fall short
(fact sheets responses.md §3 and codex.md §5). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson

from proxy.errors import ProxyError, UpstreamFailure
from proxy.hub.sse import SSEEvent
from proxy.observe.redact import redact_error_json

from .request import (
    INSTRUCTIONS_CLIENT,
    conversation_key,
    header_safe_key,
    split_effort_suffix,
)
from .response import stream_error

# Refused by the backend (or meaningless with store=false): dropped from the client's body.
DROPPED = ("max_output_tokens", "max_completion_tokens", "temperature", "top_p", "truncation", "user", "metadata",
           "safety_identifier", "prompt_cache_retention", "prompt_cache_options", "context_management", "generate",
           "previous_response_id", "background", "top_logprobs", "max_tool_calls")
MAX_ID_LENGTH = 64
TERMINAL = frozenset({"response.completed", "response.done", "response.incomplete", "response.failed"})
# Events the relay reads (all others pass through untouched, without being parsed).
_INSPECTED = TERMINAL | {"response.output_item.done", "response.output_item.added", "response.created",
                         "response.in_progress", "response.function_call_arguments.done", "error"}
# What the final object keeps of the backend's response.created when the terminal event lacks it; the
# rest (status, output, usage, error) belongs to the terminal event alone.
_PER_EVENT = frozenset({"status", "output", "usage", "error", "incomplete_details"})


def fix_responses_body(body: dict[str, Any], upstream_model: str, default_instructions: str,
                       instructions_mode: str = INSTRUCTIONS_CLIENT) -> dict[str, Any]:
    """The client's Responses body as the Codex backend accepts it."""
    fixed = {name: value for name, value in body.items() if name not in DROPPED}
    model, suffix_effort = split_effort_suffix(upstream_model)
    fixed["model"] = model
    fixed["stream"] = True
    fixed["store"] = False
    items = [_fix_item(item) for item in _input(body)]
    instructions = body.get("instructions") if isinstance(body.get("instructions"), str) else ""
    if instructions and instructions_mode != INSTRUCTIONS_CLIENT:
        items.insert(0, {"type": "message", "role": "developer",
                         "content": [{"type": "input_text", "text": instructions}]})
        instructions = ""
    fixed["instructions"] = instructions or default_instructions
    fixed["input"] = items
    reasoning = dict(body["reasoning"]) if isinstance(body.get("reasoning"), dict) else {}
    if suffix_effort and not reasoning.get("effort"):
        reasoning["effort"] = suffix_effort
    if reasoning:
        fixed["reasoning"] = reasoning
    if reasoning or "reasoning" in str(body.get("include") or ""):
        include = [entry for entry in body.get("include") or () if isinstance(entry, str)]
        if "reasoning.encrypted_content" not in include:
            include.append("reasoning.encrypted_content")  # store=false: the only way to continue reasoning
        fixed["include"] = include
    tier = body.get("service_tier")
    if tier != "priority":
        fixed.pop("service_tier", None)
    options = body.get("stream_options")
    if isinstance(options, dict) and "reasoning_summary_delivery" in options:
        fixed["stream_options"] = {"reasoning_summary_delivery": options["reasoning_summary_delivery"]}
    else:
        fixed.pop("stream_options", None)
    key = body.get("prompt_cache_key")
    fixed["prompt_cache_key"] = header_safe_key(key) if isinstance(key, str) and key else conversation_key(
        model, fixed["instructions"], items)
    return fixed


def _input(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value or ())


def _fix_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    fixed = item
    if "role" in item and "type" not in item:
        fixed = {"type": "message", **item}
    if item.get("role") == "system":  # refused since 2026-03: "System messages are not allowed"
        fixed = {**fixed, "role": "developer"}
    for name in ("id", "call_id"):
        value = fixed.get(name)
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            fixed = {**fixed, name: short_id(value)}
    content = fixed.get("content")
    if isinstance(content, list) and any(isinstance(p, dict) and "prompt_cache_breakpoint" in p for p in content):
        fixed = {**fixed, "content": [{k: v for k, v in p.items() if k != "prompt_cache_breakpoint"}
                                      if isinstance(p, dict) else p for p in content]}
    return fixed


def short_id(value: str) -> str:
    """A stable id of at most 64 characters for a longer one (the same long id always maps to the
    same short one, so a call and its output stay paired)."""
    prefix = value.split("_", 1)[0][:8] if "_" in value[:9] else "id"
    return f"{prefix}_{hashlib.sha256(value.encode()).hexdigest()[:48]}"


class ResponsesRelay:
    """Passes the backend's events through, remembering each finished output item, so the terminal
    event (and a non-stream answer) always carries the full ``output`` even when the backend sent
    ``output: []``. Every response object it sends carries ``created_at`` and ``model`` (LiteLLM, and
    so the OpenHands SDK, reads ``created_at``; the Vercel AI SDK stops after a tool call without
    them): the backend puts them on ``response.created`` only, or not at all, so the terminal
    object is ``response.created``'s fields overlaid with the terminal event's, and what neither has
    is defaulted (now; the model the client named)."""

    def __init__(self, model: str = "") -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self._names: dict[str, str] = {}  # function_call item id → name
        self.final: dict[str, Any] | None = None  # the terminal event's response object, fixed
        self.failure: ProxyError | None = None
        self.finished = False
        self._last_sequence = -1
        self._defaults = {"created_at": int(time.time()), "model": model}
        self._response: dict[str, Any] = {"id": "resp_pending", "object": "response", **self._defaults,
                                          "status": "in_progress", "output": []}  # the backend's, once it arrives

    def feed(self, event: SSEEvent) -> bytes:
        """The bytes to send the client for one upstream event."""
        if self.finished:
            return b""
        kind = event.event
        if kind == "response.in_progress" and b'"created_at"' in event.data and b'"model"' in event.data:
            return _frame(kind, event.data)  # already whole: not parsed
        if kind is None or kind in _INSPECTED:
            return self._inspect(event)
        return _frame(kind, event.data)

    def _inspect(self, event: SSEEvent) -> bytes:
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(payload, dict):
            return b""
        kind = payload.get("type") or event.event or ""
        if isinstance(payload.get("sequence_number"), int):
            self._last_sequence = payload["sequence_number"]
        if kind in ("response.created", "response.in_progress") and isinstance(payload.get("response"), dict):
            response = payload["response"]
            if kind == "response.created":
                self._response = {**self._defaults, **response, "object": "response", "status": "in_progress",
                                  "output": []}
            missing = {name: self._response[name] for name in ("created_at", "model", "object")
                       if response.get(name) is None}
            if missing:
                return _frame(kind, orjson.dumps({**payload, "response": {**response, **missing}}))
        elif kind == "response.output_item.added" and isinstance(payload.get("item"), dict):
            item = payload["item"]
            if item.get("type") == "function_call" and isinstance(item.get("id"), str):
                self._names[item["id"]] = item.get("name") or ""
        elif kind == "response.function_call_arguments.done" and "name" not in payload:
            # Newer SDKs require the name on this event; the backend has sent it without.
            payload["name"] = self._names.get(payload.get("item_id"), "")
            return _frame(kind, orjson.dumps(payload))
        elif kind == "response.output_item.done" and isinstance(payload.get("item"), dict):
            index = payload.get("output_index")
            self.items[index if isinstance(index, int) else len(self.items)] = payload["item"]
        elif kind in TERMINAL:
            self.finished = True
            response = payload.get("response") if isinstance(payload.get("response"), dict) else {}
            carried = {name: value for name, value in self._response.items()
                       if name not in _PER_EVENT and response.get(name) is None}
            if (not response.get("output") and self.items) or carried:
                # SDKs key output_text on the object type; LiteLLM reads created_at and model
                response = {**response, **carried}
                if not response.get("output"):
                    response["output"] = [self.items[i] for i in sorted(self.items)]
                payload = {**payload, "response": response}
                event = SSEEvent(event.event, orjson.dumps(payload))
            self.final = response
            if kind == "response.failed":
                error = response.get("error") if isinstance(response.get("error"), dict) else {}
                self.failure = stream_error(error.get("code"), error.get("message"))
                return _frame(kind, redact_error_json(event.data))  # an upstream may echo a credential
        elif kind == "error":  # Codex reads only response.failed: the same failure, in that form
            error = payload.get("error") if isinstance(payload.get("error"), dict) else payload
            self.failure = stream_error(error.get("code") or error.get("type"), error.get("message"))
            return self.error_frame(self.failure)
        return _frame(kind, event.data)

    def close(self) -> bytes:
        """The upstream ended: if it never said the response was done, tell the client it broke."""
        if self.finished:
            return b""
        self.finished = True
        self.failure = UpstreamFailure("The Codex stream ended before the response was complete.")
        return self.error_frame(self.failure)

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress`` of our own, for a head sent before the
        backend answered (the backend's own ``response.created`` follows when it does)."""
        self._response["id"] = "resp_" + uuid.uuid4().hex
        return self._event("response.created") + self._event("response.in_progress")

    def keepalive(self) -> bytes:
        """``response.in_progress`` while the backend is silent: Codex's idle timer counts events,
        not SSE comments. It repeats the last sequence number rather than take the backend's next."""
        if self.finished:
            return b""
        return _frame("response.in_progress", orjson.dumps({"type": "response.in_progress",
                                                           "sequence_number": max(self._last_sequence, 0),
                                                           "response": self._response}))

    def error_frame(self, error: ProxyError) -> bytes:
        """``response.failed`` with the error's code: how Codex reads a stream that cannot go on
        (``server_is_overloaded``, ``rate_limit_exceeded``… get its own handling; others a retry)."""
        self.finished = True
        detail = error.to_dict()["error"]
        self._response = {**self._response, "status": "failed",
                          "error": {"code": detail["code"] or "server_error", "message": detail["message"]},
                          "output": [self.items[i] for i in sorted(self.items)]}
        return self._event("response.failed")

    def _event(self, kind: str) -> bytes:
        self._last_sequence += 1
        return _frame(kind, orjson.dumps({"type": kind, "sequence_number": self._last_sequence,
                                          "response": self._response}))


def _frame(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
