"""Token usage read from answers that are relayed as bytes, without slowing the relay.

Relayed answers (an API key's Chat Completions, the Codex backend's Responses events, Anthropic's
Messages) are never decoded on the way through; their usage sits in one place at the end (the last
``data:`` frame with ``"usage"``, or the whole non-stream body), so only that is parsed, once, after
the last byte went out. Every vendor's usage shape becomes the one :class:`Usage` the request record
counts (input, cached, output, reasoning tokens).
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.hub.events import Usage

_USAGE = b'"usage"'


def usage_from_dict(usage: Any) -> Usage | None:
    """Chat Completions (``prompt_tokens``), Responses (``input_tokens`` with ``total_tokens``) or
    Anthropic (``input_tokens`` plus cache counts, no total) usage, as one :class:`Usage`."""
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        cached = _detail(usage.get("prompt_tokens_details"), "cached_tokens")
        reasoning = _detail(usage.get("completion_tokens_details"), "reasoning_tokens")
        return Usage(prompt, completion, _int(usage.get("total_tokens")) or prompt + completion, cached, reasoning)
    if "input_tokens" not in usage and "output_tokens" not in usage:
        return None
    completion = _int(usage.get("output_tokens"))
    if "total_tokens" in usage or "input_tokens_details" in usage or "output_tokens_details" in usage:
        prompt = _int(usage.get("input_tokens"))
        cached = _detail(usage.get("input_tokens_details"), "cached_tokens")
        reasoning = _detail(usage.get("output_tokens_details"), "reasoning_tokens")
        return Usage(prompt, completion, _int(usage.get("total_tokens")) or prompt + completion, cached, reasoning)
    # Anthropic: input_tokens excludes the cache reads and writes; count them as input, like the translator.
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens")) + cached
    return Usage(prompt, completion, prompt + completion, cached if "cache_read_input_tokens" in usage else None)


def usage_in_body(body: bytes) -> Usage | None:
    """The ``usage`` of a whole JSON answer (top level, or a Responses event's ``response``)."""
    if _USAGE not in body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _usage_of(parsed) if isinstance(parsed, dict) else None


_SMALL = 64 * 1024


def usage_at_end(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer that may be megabytes of vectors or images: its last ``"usage"``
    object alone is parsed (a small body is parsed whole, as :func:`usage_in_body` does)."""
    if len(body) <= _SMALL:
        return usage_in_body(body)
    at = body.rfind(_USAGE)
    if at < 0:
        return None
    start = body.find(b"{", at + len(_USAGE))
    if start < 0 or body[at + len(_USAGE):start].strip() != b":":
        return None
    depth = 0
    for end in range(start, min(len(body), start + 4096)):  # a usage object is a few hundred bytes
        byte = body[end]
        if byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                try:
                    return usage_from_dict(orjson.loads(body[start:end + 1]))
                except orjson.JSONDecodeError:
                    return None
    return None


def usage_in_stream(tail: bytes, head: bytes = b"") -> Usage | None:
    """The usage of a relayed SSE stream, from its last bytes (``tail``: the final frames) and, for
    Anthropic, whose input count comes first (``message_start``), its first bytes (``head``)."""
    last = _last_usage_frame(tail)
    if last is None:
        return None
    start = _first_usage_frame(head) if head and b"message_start" in head else None
    if isinstance(start, dict) and isinstance(start.get("message"), dict):
        merged = dict(start["message"].get("usage") or {})
        merged.update(last.get("usage") or {})  # message_delta's counts are cumulative: they win
        return usage_from_dict(merged)
    return _usage_of(last)


def _usage_of(obj: dict) -> Usage | None:
    usage = obj.get("usage")
    if usage is None and isinstance(obj.get("response"), dict):
        usage = obj["response"].get("usage")  # response.completed / response.incomplete
    if usage is None and isinstance(obj.get("message"), dict):
        usage = obj["message"].get("usage")  # message_start
    return usage_from_dict(usage)


def _last_usage_frame(data: bytes) -> dict | None:
    at = data.rfind(_USAGE)
    return _frame_around(data, at) if at >= 0 else None


def _first_usage_frame(data: bytes) -> dict | None:
    at = data.find(_USAGE)
    return _frame_around(data, at) if at >= 0 else None


def _frame_around(data: bytes, at: int) -> dict | None:
    """The JSON of the ``data:`` line that holds offset ``at`` (None when it is cut or not JSON)."""
    start = data.rfind(b"data:", 0, at)
    if start < 0:
        return None
    end = data.find(b"\n", at)
    try:
        parsed = orjson.loads(data[start + 5:end if end >= 0 else len(data)])
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _detail(details: Any, key: str) -> int | None:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
