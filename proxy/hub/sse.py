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


# The largest single event the proxy accepts from an upstream (a final ``response.completed``
# repeating a long answer is the biggest legitimate one). Beyond it the stream fails cleanly.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEventTooLarge(ValueError):
    """An upstream sent an event (or an unterminated line) larger than the decoder's cap."""


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` objects, across any chunk boundaries.

    Linear in the input: an unfinished event is kept in a ``bytearray`` that only grows by the
    new chunk, and the search for the blank-line terminator resumes where it stopped, so a huge
    event arriving in small pieces costs no more than the same event in one piece.
    """

    __slots__ = ("_buffer", "_scanned", "_held_cr", "_max")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for a terminator
        self._held_cr = False
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add ``chunk`` and return every event completed by it (possibly none).

        Raises :class:`SSEEventTooLarge` when an unfinished event outgrows the cap.
        """
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                # It may be the first half of a CRLF split across chunks: decide when more arrives.
                chunk, self._held_cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        if not buffer:
            # The common case: nothing pending, so frames are sliced from the chunk itself.
            events, rest = _split_frames(chunk, 0)
            if rest < len(chunk):
                buffer += memoryview(chunk)[rest:]
                self._scanned = len(buffer)
                self._check_size()
            return events
        # Resume one byte early: the terminator may straddle the old end and the new chunk.
        resume = max(0, self._scanned - 1)
        buffer += chunk
        if buffer.find(b"\n\n", resume) < 0:
            self._scanned = len(buffer)
            self._check_size()
            return []
        events, rest = _split_frames(bytes(buffer), 0)
        del buffer[:rest]
        self._scanned = len(buffer)
        self._check_size()
        return events

    def _check_size(self) -> None:
        if len(self._buffer) > self._max:
            size = len(self._buffer)
            self._buffer = bytearray()
            self._scanned = 0
            raise SSEEventTooLarge(f"an upstream event exceeded {self._max} bytes ({size} bytes without an end)")

    def flush(self) -> list[SSEEvent]:
        """Return the last event when the stream ended without its terminating blank line."""
        remainder = bytes(self._buffer).strip(b"\n")
        self._buffer = bytearray()
        self._scanned = 0
        self._held_cr = False
        if not remainder:
            return []
        events = []
        for frame in remainder.split(b"\n\n"):
            event = _parse_frame(frame)
            if event is not None:
                events.append(event)
        return events


def _split_frames(data: bytes, start: int) -> tuple[list[SSEEvent], int]:
    """Every complete frame in ``data`` from ``start``; returns them and where the rest begins."""
    events: list[SSEEvent] = []
    find = data.find
    while True:
        end = find(b"\n\n", start)
        if end < 0:
            return events, start
        event = _parse_frame(data[start:end])
        start = end + 2
        if event is not None:
            events.append(event)


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
