"""What adapter translators emit: the neutral answer, as a stream of small events.

Each adapter turns its upstream's events into these records (:class:`AnswerEvent`); every door turns
the same records into its client's stream or one aggregated answer (``proxy/doors/*/stream.py``).
Keeping one vocabulary means streaming and non-streaming can never disagree about an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

from proxy.errors import ProxyError
from proxy.hub.sse import SSEEvent


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ReasoningDone:
    """A reasoning step ended; ``encrypted`` is the vendor's opaque payload that lets the same vendor
    continue from it on a later turn (Codex ``encrypted_content``), when it sent one."""

    encrypted: str | None


@dataclass(slots=True)
class ToolCallStart:
    """The first piece of tool call number ``index`` (0, 1, 2… in the order the calls began)."""

    index: int
    call_id: str
    name: str


@dataclass(slots=True)
class ToolCallArguments:
    index: int
    fragment: str


@dataclass(slots=True)
class Finish:
    reason: str  # stop | length | tool_calls | content_filter


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def to_dict(self) -> dict:
        usage: dict = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


@dataclass(slots=True)
class StreamFailure:
    """The upstream reported an error after the stream had begun."""

    error: ProxyError


AnswerEvent = Union[TextDelta, ReasoningDelta, ReasoningDone, ToolCallStart, ToolCallArguments, Finish, Usage, StreamFailure]


class StreamTranslator(Protocol):
    """Pure, incremental translation of one upstream response into :data:`AnswerEvent` records."""

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        """Translate one upstream SSE event (it may yield nothing)."""

    def close(self) -> list[AnswerEvent]:
        """The upstream stream ended: emit whatever is still owed (or a failure if it ended early)."""

    @property
    def finished(self) -> bool:
        """True once the upstream said the response is complete (or failed)."""


def first_failure(events: list[AnswerEvent]) -> ProxyError | None:
    """The error, if ``events`` fail before delivering any answer (text or tool call)."""
    for event in events:
        if isinstance(event, StreamFailure):
            return event.error
        if isinstance(event, (TextDelta, ToolCallStart, ToolCallArguments)):
            return None
    return None
