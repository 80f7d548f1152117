"""Helpers for translator tests: replay a fixture transcript in arbitrary network-sized pieces."""

from __future__ import annotations

from pathlib import Path

from proxy.doors.chat.aggregate import CompletionAggregator
from proxy.hub.events import AnswerEvent
from proxy.hub.sse import SSEDecoder

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def replay(raw: bytes, translator, chunk_size: int = 7) -> list[AnswerEvent]:
    """Feed ``raw`` to a translator as an upstream would, ``chunk_size`` bytes at a time."""
    decoder = SSEDecoder()
    events: list[AnswerEvent] = []
    for start in range(0, len(raw), chunk_size):
        for sse in decoder.feed(raw[start:start + chunk_size]):
            events += translator.feed(sse)
        if translator.finished:
            return events
    for sse in decoder.flush():
        events += translator.feed(sse)
    return events + translator.close()


def aggregate(events: list[AnswerEvent]) -> dict:
    aggregator = CompletionAggregator()
    aggregator.add(events)
    return aggregator.result("chatcmpl-test", "m", created=1)
