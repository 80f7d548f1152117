"""Whether a request may continue a socket's last response: the cache and its proof (pure, no I/O).

On the Codex backend's WebSocket a request can carry ``previous_response_id`` and only the items that are
new since that response; the backend then continues the conversation it holds for the connection. That is
right only when the request is *exactly* the socket's previous request, then the answer it got, then new
items. Anything else (other instructions, tools, model or settings; an edited or dropped item; a
compaction) must go in full, or the model would continue a conversation the client no longer has.

The comparison is made in the shape subrelay sends for the client's request (its full ``input`` as it
would go over HTTP), so every door gets it: a Chat or Messages client's history, translated, must start
with the previous translated history; what follows must be the backend's answer *as the client echoes
it* (:func:`echo_key`): a Chat client drops reasoning and item ids, so those may be missing, but every
message, tool call and reasoning item that is there must be the backend's own, in order. The backend then
continues from its real items, reasoning included, which is better than the client's copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Fields that say how a request travels, not what it asks: they may change between turns.
TRANSPORT_FIELDS = frozenset({"input", "stream_options", "client_metadata", "previous_response_id", "generate",
                              "stream"})


@dataclass(slots=True)
class Turn:
    """What a socket last sent in full and got back: the record a continuation must match."""

    settings: dict[str, Any]  # the request without its input (see :func:`settings_of`)
    input: list[Any]  # the full input, as it would have gone over HTTP
    response_id: str = ""  # set when the response completed; empty: nothing to continue
    output: list[Any] = field(default_factory=list)  # the backend's output items, in order
    prewarm: bool = False  # a ``generate: false`` response: continuing it with nothing new is allowed


def settings_of(body: dict[str, Any]) -> dict[str, Any]:
    """Everything in ``body`` that must be unchanged for a continuation (all but :data:`TRANSPORT_FIELDS`)."""
    return {name: value for name, value in body.items() if name not in TRANSPORT_FIELDS}


def continuation(turn: Turn | None, body: dict[str, Any]) -> list[Any] | None:
    """The items to send after ``turn.response_id`` for the full request ``body``, or None: send it in full.

    ``body["input"]`` must equal ``turn.input``, then the backend's output as the client echoed it, then at
    least one new item (none only after a prewarm). Settings must be equal, field for field.
    """
    if turn is None or not turn.response_id:
        return None
    items = body.get("input")
    if not isinstance(items, list) or settings_of(body) != turn.settings:
        return None
    known = len(turn.input)
    if len(items) < known or items[:known] != turn.input:
        return None
    rest = items[known:]
    echoed = _echoed(turn.output, rest)
    if echoed is None:
        return None
    new = rest[echoed:]
    if not new and not (turn.prewarm and not turn.output):
        return None
    return new


def _echoed(output: list[Any], rest: list[Any]) -> int | None:
    """How many leading items of ``rest`` are the client's copy of ``output``; None when it is not one.

    Each output item must be there, in order, except those a client may leave out without changing the
    conversation it sees: reasoning (Chat clients cannot carry it) and an assistant message without text.
    """
    position = 0
    for item in output:
        key = echo_key(item)
        if position < len(rest) and echo_key(rest[position]) == key:
            position += 1
        elif not _may_be_left_out(item):
            return None
    return position


def _may_be_left_out(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    kind = item.get("type", "message")
    if kind == "reasoning":
        return True
    return kind == "message" and item.get("role") == "assistant" and not any(text for _, text in _parts(item))


def echo_key(item: Any) -> tuple:
    """What must be equal between an output item and a client's copy of it: its meaning, not the
    metadata a client may drop or rewrite (``id``, ``status``, annotations, a text part's exact type)."""
    if not isinstance(item, dict):
        return ("other", orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
    kind = item.get("type", "message")
    if kind == "message":
        return ("message", item.get("role"), tuple(_parts(item)))
    if kind == "function_call":
        return ("function_call", item.get("call_id"), item.get("name"), item.get("arguments"))
    if kind == "custom_tool_call":
        return ("custom_tool_call", item.get("call_id"), item.get("name"), item.get("input"))
    if kind == "reasoning":
        encrypted = item.get("encrypted_content")
        return ("reasoning", encrypted) if encrypted else ("reasoning", None, item.get("id"))
    rest = {name: value for name, value in item.items() if name not in ("id", "status")}
    return (kind, orjson.dumps(rest, option=orjson.OPT_SORT_KEYS))


def _parts(item: dict[str, Any]) -> list[tuple[str, Any]]:
    content = item.get("content")
    if isinstance(content, str):
        return [("text", content)] if content else []
    parts: list[tuple[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            parts.append(("other", part))
        elif part.get("type") in ("output_text", "input_text", "text"):
            if part.get("text"):
                parts.append(("text", part.get("text")))
        else:
            parts.append((str(part.get("type")), orjson.dumps(part, option=orjson.OPT_SORT_KEYS)))
    return parts
