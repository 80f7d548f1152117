"""Codex Responses SSE → :mod:`proxy.hub.events`, incrementally (pure).

The stream is translated event by event so the first token reaches the client while the upstream is
still writing. Two upstream habits shape the bookkeeping (fact sheet §5): ``response.completed`` often
carries an empty ``output`` (so text and tool calls must come from the deltas already seen), and some
streams carry only ``*.done`` / item events (so those are used when no deltas came). Every item's
emitted text and arguments are remembered so nothing is ever emitted twice.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import BadRequest, ProxyError, RateLimited, UpstreamFailure, UpstreamOverloaded
from proxy.hub.events import (
    AnswerEvent,
    Finish,
    ReasoningDelta,
    ReasoningDone,
    StreamFailure,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
    Usage,
)
from proxy.hub.sse import SSEEvent


class CodexStreamTranslator:
    """Translates one Codex response; see :class:`proxy.hub.events.StreamTranslator`."""

    def __init__(self, tool_names: dict[str, str] | None = None) -> None:
        self._tool_names = tool_names or {}  # shortened tool name → the client's own
        self._text: dict[str, list[str]] = {}  # item key → text emitted for it
        self._reasoning: dict[str, list[str]] = {}
        self._calls: dict[str, int] = {}  # item key → tool call index
        self._call_ids: set[str] = set()
        self._arguments: dict[int, list[str]] = {}
        self._emitted_text = False
        self._emitted_reasoning = False
        self._reasoning_done: set[str] = set()
        self.finished = False

    # -- entry points ----------------------------------------------------------------------------

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        if self.finished:
            return []
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []  # not JSON (a stray keep-alive): nothing to translate
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type") or event.event
        handler = _HANDLERS.get(kind)
        return handler(self, payload) if handler is not None else []

    def feed_events(self, events: list[SSEEvent]) -> list[AnswerEvent]:
        """:meth:`feed` over one upstream read's events, the text delta (nearly every event of an answer)
        handled inline: three Python calls fewer per delta (benchmarks/README.md, issue 21)."""
        out: list[AnswerEvent] = []
        loads = orjson.loads
        for event in events:
            if self.finished:
                break
            try:
                payload = loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            kind = payload.get("type") or event.event
            if kind == "response.output_text.delta":  # what _on_text_delta does
                delta = payload.get("delta")
                if delta:
                    item_id = payload.get("item_id")
                    key = item_id if isinstance(item_id, str) else f"#out{payload.get('output_index', 0)}"
                    parts = self._text.get(key)
                    if parts is None:
                        parts = self._text[key] = []
                    parts.append(delta)
                    self._emitted_text = True
                    out.append(TextDelta(delta))
                continue
            handler = _HANDLERS.get(kind)
            if handler is not None:
                out += handler(self, payload)
        return out

    def close(self) -> list[AnswerEvent]:
        if self.finished:
            return []
        self.finished = True
        return [StreamFailure(UpstreamFailure("The Codex stream ended before the response was complete."))]

    # -- deltas ----------------------------------------------------------------------------------

    def _on_text_delta(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        delta = payload.get("delta")
        if not delta:
            return []
        self._text.setdefault(_key(payload), []).append(delta)
        self._emitted_text = True
        return [TextDelta(delta)]

    def _on_text_done(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        return self._text_remainder(_key(payload), payload.get("text") or "")

    def _on_reasoning_delta(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        delta = payload.get("delta")
        if not delta:
            return []
        self._reasoning.setdefault(_key(payload), []).append(delta)
        self._emitted_reasoning = True
        return [ReasoningDelta(delta)]

    def _on_summary_part(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        # Separate consecutive summary parts the way ChatGPT shows them: as paragraphs.
        if self._emitted_reasoning and payload.get("summary_index", 0):
            self._reasoning.setdefault(_key(payload), []).append("\n\n")
            return [ReasoningDelta("\n\n")]
        return []

    def _on_item_added(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        item = payload.get("item") or {}
        if item.get("type") != "function_call":
            return []
        events = self._start_call(_item_key(item, payload), item)
        arguments = item.get("arguments")
        if events and arguments:
            events += self._arguments_remainder(_item_key(item, payload), arguments)
        return events

    def _on_arguments_delta(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        index = self._calls.get(_key(payload))
        delta = payload.get("delta")
        if index is None or not delta:
            return []
        self._arguments[index].append(delta)
        return [ToolCallArguments(index, delta)]

    def _on_arguments_done(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        return self._arguments_remainder(_key(payload), payload.get("arguments") or "")

    def _on_item_done(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        item = payload.get("item") or {}
        return self._reconcile(_item_key(item, payload), item)

    # -- terminal events -------------------------------------------------------------------------

    def _on_completed(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        response = payload.get("response") or {}
        events = self._reconcile_output(response.get("output") or [])
        events.append(Finish("tool_calls" if self._calls else "stop"))
        events += self._usage(response)
        self.finished = True
        return events

    def _on_incomplete(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        response = payload.get("response") or {}
        reason = (response.get("incomplete_details") or {}).get("reason")
        self.finished = True
        if reason in ("max_output_tokens", "content_filter"):
            events = self._reconcile_output(response.get("output") or [])
            events.append(Finish("length" if reason == "max_output_tokens" else "content_filter"))
            return events + self._usage(response)
        return [StreamFailure(UpstreamFailure(f"The Codex response is incomplete ({reason or 'no reason given'})."))]

    def _on_failed(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        error = (payload.get("response") or {}).get("error") or {}
        self.finished = True
        return [StreamFailure(stream_error(error.get("code"), error.get("message")))]

    def _on_error(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else payload
        self.finished = True
        return [StreamFailure(stream_error(error.get("code") or error.get("type"), error.get("message")))]

    # -- bookkeeping -----------------------------------------------------------------------------

    def _start_call(self, key: str, item: dict[str, Any]) -> list[AnswerEvent]:
        call_id = item.get("call_id") or item.get("id") or key
        if key in self._calls or call_id in self._call_ids:
            return []
        index = len(self._calls)
        self._calls[key] = index
        self._call_ids.add(call_id)
        self._arguments[index] = []
        name = item.get("name") or ""
        return [ToolCallStart(index, call_id, self._tool_names.get(name, name))]

    def _arguments_remainder(self, key: str, final: str) -> list[AnswerEvent]:
        index = self._calls.get(key)
        if index is None or not final:
            return []
        sent = "".join(self._arguments[index])
        if final == sent or not final.startswith(sent):
            return []
        rest = final[len(sent):]
        self._arguments[index].append(rest)
        return [ToolCallArguments(index, rest)]

    def _text_remainder(self, key: str, final: str) -> list[AnswerEvent]:
        sent = "".join(self._text.get(key, ()))
        if not final or final == sent or not final.startswith(sent):
            return []
        rest = final[len(sent):]
        self._text.setdefault(key, []).append(rest)
        self._emitted_text = True
        return [TextDelta(rest)]

    def _reconcile(self, key: str, item: dict[str, Any]) -> list[AnswerEvent]:
        """Emit whatever part of a finished item its deltas did not already deliver."""
        kind = item.get("type")
        if kind == "message":
            final = "".join(
                part.get("text") or part.get("refusal") or ""
                for part in item.get("content") or ()
                if part.get("type") in ("output_text", "refusal")
            )
            return self._text_remainder(key, final)
        if kind == "function_call":
            events = self._start_call(key, item)
            if key in self._calls:
                events += self._arguments_remainder(key, item.get("arguments") or "")
            return events
        if kind == "reasoning":
            events: list[AnswerEvent] = []
            if key not in self._reasoning and not self._emitted_text:
                summary = "\n\n".join(part.get("text", "") for part in item.get("summary") or () if part.get("text"))
                if summary:
                    self._reasoning[key] = [summary]
                    self._emitted_reasoning = True
                    events.append(ReasoningDelta(summary))
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted and key not in self._reasoning_done:
                self._reasoning_done.add(key)
                events.append(ReasoningDone(encrypted))
            return events
        return []

    def _reconcile_output(self, output: list[dict[str, Any]]) -> list[AnswerEvent]:
        """``response.completed.output`` is a fallback: used only for items the events missed."""
        events: list[AnswerEvent] = []
        for position, item in enumerate(output):
            if not isinstance(item, dict):
                continue
            item_id = item.get("id")
            if item_id is None:
                # Without an id we cannot tell it from what was streamed: use it only if nothing was.
                kind = item.get("type")
                if (kind == "message" and self._emitted_text) or (kind == "function_call" and self._calls):
                    continue
                if kind == "reasoning" and self._emitted_reasoning:
                    continue
            events += self._reconcile(self._known_key(item_id, position), item)
        return events

    def _known_key(self, item_id: str | None, position: int) -> str:
        """The key the streamed events used for this output item (by id, else by position)."""
        if item_id is not None and (item_id in self._text or item_id in self._calls or item_id in self._reasoning):
            return item_id
        by_position = f"#out{position}"
        if by_position in self._text or by_position in self._calls or by_position in self._reasoning:
            return by_position
        return item_id or by_position

    @staticmethod
    def _usage(response: dict[str, Any]) -> list[AnswerEvent]:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return []
        prompt = int(usage.get("input_tokens") or 0)
        completion = int(usage.get("output_tokens") or 0)
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
        return [
            Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=int(usage.get("total_tokens") or prompt + completion),
                cached_tokens=int(cached) if cached is not None else None,
                reasoning_tokens=int(reasoning) if reasoning is not None else None,
            )
        ]


def stream_error(code: Any, message: Any) -> ProxyError:
    """An error the backend reported inside the stream, as one of our errors."""
    code = code if isinstance(code, str) else None
    text = message if isinstance(message, str) and message else "The Codex backend reported an error."
    if code in ("rate_limit_exceeded", "usage_limit_reached", "insufficient_quota"):
        return RateLimited(f"Codex: {text}", code=code)
    if code in ("context_length_exceeded", "invalid_prompt", "invalid_request_error", "invalid_image"):
        return BadRequest(f"Codex: {text}", code=code)
    if code in ("server_is_overloaded", "slow_down"):
        return UpstreamOverloaded(f"Codex: {text}", code=code)
    return UpstreamFailure(f"Codex: {text}", code=code or "upstream_error")


def _key(payload: dict[str, Any]) -> str:
    item_id = payload.get("item_id")
    return item_id if isinstance(item_id, str) else f"#out{payload.get('output_index', 0)}"


def _item_key(item: dict[str, Any], payload: dict[str, Any]) -> str:
    item_id = item.get("id")
    return item_id if isinstance(item_id, str) else f"#out{payload.get('output_index', 0)}"


_HANDLERS = {
    "response.output_text.delta": CodexStreamTranslator._on_text_delta,
    "response.output_text.done": CodexStreamTranslator._on_text_done,
    "response.refusal.delta": CodexStreamTranslator._on_text_delta,
    "response.reasoning_summary_text.delta": CodexStreamTranslator._on_reasoning_delta,
    "response.reasoning_text.delta": CodexStreamTranslator._on_reasoning_delta,
    "response.reasoning_summary_part.added": CodexStreamTranslator._on_summary_part,
    "response.output_item.added": CodexStreamTranslator._on_item_added,
    "response.output_item.done": CodexStreamTranslator._on_item_done,
    "response.function_call_arguments.delta": CodexStreamTranslator._on_arguments_delta,
    "response.function_call_arguments.done": CodexStreamTranslator._on_arguments_done,
    "response.completed": CodexStreamTranslator._on_completed,
    "response.done": CodexStreamTranslator._on_completed,
    "response.incomplete": CodexStreamTranslator._on_incomplete,
    "response.failed": CodexStreamTranslator._on_failed,
    "error": CodexStreamTranslator._on_error,
}
