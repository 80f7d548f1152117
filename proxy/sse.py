"""The one Server-Sent Events codec: incremental decoding and encoding.

Upstreams deliver SSE in arbitrary TCP-sized pieces; a frame may be split anywhere, including between
the ``\\r`` and ``\\n`` of a CRLF. The decoder keeps the unfinished tail and returns whole events as
soon as their blank-line terminator arrives, so translation stays incremental. Data stays ``bytes``
because ``orjson.loads`` reads bytes directly.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class SSEEvent:
    """One decoded frame: its ``event:`` name (or None) and its ``data:`` lines joined by ``\\n``."""

    event: str | None
    data: bytes


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` objects, across any chunk boundaries."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add ``chunk`` and return every event completed by it (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                # It may be the first half of a CRLF split across chunks: decide when more arrives.
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[SSEEvent] = []
        start = 0
        find = buffer.find
        while True:
            end = find(b"\n\n", start)
            if end < 0:
                break
            event = _parse_frame(buffer[start:end])
            start = end + 2
            if event is not None:
                events.append(event)
        self._buffer = (buffer[start:] if start else buffer) + held
        return events

    def flush(self) -> list[SSEEvent]:
        """Return the last event when the stream ended without its terminating blank line."""
        remainder = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip(b"\n")
        self._buffer = b""
        if not remainder:
            return []
        events = []
        for frame in remainder.split(b"\n\n"):
            event = _parse_frame(frame)
            if event is not None:
                events.append(event)
        return events


def _parse_frame(frame: bytes) -> SSEEvent | None:
    # Fast path for the shape nearly every upstream frame has: one "event:" and one "data:" line.
    if frame.startswith(b"event: "):
        newline = frame.find(b"\n")
        if newline > 0 and frame.startswith(b"data: ", newline + 1) and frame.find(b"\n", newline + 1) < 0:
            return SSEEvent(frame[7:newline].decode("utf-8", "replace"), frame[newline + 7:])
    elif frame.startswith(b"data: ") and b"\n" not in frame:
        return SSEEvent(None, frame[6:])
    event_name: str | None = None
    data_lines: list[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line[0] == 0x3A:  # blank, or a ":" comment (keep-alive)
            continue
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            event_name = value.decode("utf-8", "replace")
        # "id" and "retry" carry nothing the proxy needs.
    if not data_lines:
        return None
    data = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
    return SSEEvent(event_name, data)


def encode_data(payload: bytes) -> bytes:
    """Frame an already-serialised JSON payload as one SSE ``data:`` event."""
    return b"data: " + payload + b"\n\n"
