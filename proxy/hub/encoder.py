"""What every encoder of the hub's answer events into a client format shares.

Frames are buffered and handed out per batch; the finish reason and usage are remembered as they
arrive; the answer ends exactly once, finished or failed. A subclass says what content events become
(:meth:`_content`) and how its format ends (:meth:`_finished`, :meth:`_failure`).
"""

from __future__ import annotations

from proxy.errors import ProxyError
from proxy.hub.events import AnswerEvent, Finish, StreamFailure, Usage


class AnswerEncoder:
    def __init__(self, *, emit: bool = True) -> None:
        self._emit = emit  # False: build only the final object (non-streaming clients)
        self._parts: list[bytes] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.failure: ProxyError | None = None
        self.ended = False

    def encode(self, events: list[AnswerEvent]) -> bytes:
        """A batch of events as this format's frames (one write to the client)."""
        if self.ended:
            return b""
        for event in events:
            kind = type(event)
            if kind is Finish:
                self.finish_reason = event.reason
            elif kind is Usage:
                self.usage = event
            elif kind is StreamFailure:
                self._failed(event.error)
                break
            else:
                self._content(event)
        return self._flush()

    def finish(self) -> bytes:
        """The format's clean ending (nothing if the answer already ended)."""
        if self.ended:
            return b""
        self.ended = True
        self._finished()
        return self._flush()

    def fail(self, error: ProxyError) -> bytes:
        """End with ``error`` in this format's way (after the stream had started)."""
        self._failed(error)
        return self._flush()

    def _failed(self, error: ProxyError) -> None:
        if self.ended:
            return
        self.ended = True
        self.failure = error
        self._failure(error)

    def _flush(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data

    # -- what a format says --------------------------------------------------------------------------

    def _content(self, event: AnswerEvent) -> None:
        raise NotImplementedError

    def _finished(self) -> None:
        raise NotImplementedError

    def _failure(self, error: ProxyError) -> None:
        raise NotImplementedError
