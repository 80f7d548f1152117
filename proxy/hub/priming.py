"""Waiting briefly for an answer's first event before committing to a 200.

A translated stream is primed: the proxy waits (at most :data:`PRIME_SECONDS`) for the first
translated event before it sends the response head, so an upstream that fails right away still
yields a proper HTTP status (or a fallback) instead of an error buried in a 200 stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from proxy.hub.events import AnswerEvent

# Longest wait for the first event before the response head is sent anyway (long silent reasoning).
PRIME_SECONDS = 3.0


async def prime(batches: AsyncIterator[list[AnswerEvent]]) -> tuple[list[AnswerEvent], asyncio.Task | None]:
    """Read until the first translated event, for at most :data:`PRIME_SECONDS`.

    Returns the events read and, if the wait timed out, the still-running read (which the streaming
    body awaits first). The read runs as a task and is shielded from the timeout so the upstream
    generator is never interrupted halfway through.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PRIME_SECONDS
    events: list[AnswerEvent] = []
    while True:
        task = asyncio.ensure_future(anext(batches, None))
        try:
            batch = await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return events, task
        if batch is None:
            return events, None
        events += batch
        if events:
            return events, None

