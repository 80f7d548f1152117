"""Encoding :mod:`proxy.hub.events` as Chat Completions SSE chunks, cheaply.

Every chunk of one response shares its ``id``, ``created`` and ``model``, so the JSON around the delta
is serialised once and each chunk is built by concatenating bytes. Only the delta's own strings go
through ``orjson`` per chunk.
"""

from __future__ import annotations

import time
import uuid

import orjson

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
from proxy.hub.sse import DONE

_NO_FINISH = b',"finish_reason":null}]}\n\n'
_CONTENT_END = b"}" + _NO_FINISH


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class ChunkEncoder:
    """Turns one response's events into SSE bytes; remembers whether the stream was ended."""

    __slots__ = ("_prefix", "_content", "_header", "_include_usage", "ended")

    def __init__(self, completion_id: str, model: str, include_usage: bool, created: int | None = None) -> None:
        created = int(time.time()) if created is None else created
        self._header = (
            b'{"id":' + orjson.dumps(completion_id) + b',"object":"chat.completion.chunk","created":'
            + str(created).encode() + b',"model":' + orjson.dumps(model)
        )
        self._prefix = b"data: " + self._header + b',"choices":[{"index":0,"delta":'
        self._content = self._prefix + b'{"content":'  # a text delta's chunk up to the text
        self._include_usage = include_usage
        self.ended = False

    def start(self) -> bytes:
        """The first chunk: the assistant role, before any content."""
        return self._prefix + b'{"role":"assistant","content":""}' + _NO_FINISH

    def encode(self, events: list[AnswerEvent]) -> bytes:
        """Encode a batch of events into one bytes object (one write to the client)."""
        if self.ended:
            return b""
        parts: list[bytes] = []
        prefix = self._prefix
        content = self._content
        dumps = orjson.dumps
        for event in events:
            kind = type(event)
            if kind is TextDelta:  # the common chunk: its pieces joined once, with the batch
                parts += (content, dumps(event.text), _CONTENT_END)
            elif kind is ReasoningDelta:
                parts.append(prefix + b'{"reasoning_content":' + orjson.dumps(event.text) + b"}" + _NO_FINISH)
            elif kind is ToolCallArguments:
                parts.append(
                    prefix + b'{"tool_calls":[{"index":' + str(event.index).encode()
                    + b',"function":{"arguments":' + orjson.dumps(event.fragment) + b"}}]}" + _NO_FINISH
                )
            elif kind is ToolCallStart:
                call = {
                    "index": event.index,
                    "id": event.call_id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
                parts.append(prefix + b'{"tool_calls":[' + orjson.dumps(call) + b"]}" + _NO_FINISH)
            elif kind is Finish:
                parts.append(prefix + b'{},"finish_reason":' + orjson.dumps(event.reason) + b"}]}\n\n")
            elif kind is Usage:
                if self._include_usage:
                    parts.append(
                        b"data: " + self._header + b',"choices":[],"usage":' + orjson.dumps(event.to_dict())
                        + b"}\n\n"
                    )
            elif kind is StreamFailure:
                parts.append(b"data: " + event.error.to_json() + b"\n\n")
                self.ended = True
                break
        return b"".join(parts)

    def done(self) -> bytes:
        """The terminating ``[DONE]`` line (nothing if an error already ended the stream)."""
        if self.ended:
            return b""
        self.ended = True
        return DONE
