"""Helpers for translator tests: replay a fixture transcript in arbitrary network-sized pieces."""

from __future__ import annotations

from pathlib import Path

from proxy.aggregate import CompletionAggregator
from proxy.events import ChatEvent
from proxy.sse import SSEDecoder

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def replay(raw: bytes, translator, chunk_size: int = 7) -> list[ChatEvent]:
    """Feed ``raw`` to a translator as an upstream would, ``chunk_size`` bytes at a time."""
    decoder = SSEDecoder()
    events: list[ChatEvent] = []
    for start in range(0, len(raw), chunk_size):
        for sse in decoder.feed(raw[start:start + chunk_size]):
            events += translator.feed(sse)
        if translator.finished:
            return events
    for sse in decoder.flush():
        events += translator.feed(sse)
    return events + translator.close()


def aggregate(events: list[ChatEvent]) -> dict:
    aggregator = CompletionAggregator()
    aggregator.add(events)
    return aggregator.result("chatcmpl-test", "m", created=1)
