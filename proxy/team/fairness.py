"""Fair shares of what one server holds for everyone: concurrent model requests and open sockets.

Every bounded thing a server has (upstream connections, client connection slots, the event loop's
time) is shared by all its members; without a cap per person, one member's batch of non-reading
streams or idle sockets holds them all and the others get 503 or 504. The caps are per person and
per process (each replica enforces its own), checked at the edge before anything is opened:
``SUBRELAY_USER_MAX_CONCURRENT`` requests in flight (default 8) and ``SUBRELAY_USER_MAX_SOCKETS``
open Responses sockets (default 4). The owner's keys are not capped: the server is theirs.

An admin may give one member another cap (``subrelay users set NAME --max-concurrent N``), and cap
the streams the whole deployment opens on one upstream key (``max_concurrent`` in its
``[providers.<name>]``). When a cap is full, ``[fairness] when_full`` says what happens: ``refuse``
(429 at once, the default) or ``queue`` (wait up to ``queue_seconds`` for a slot, first come first
served, then 429).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping

from proxy.errors import RateLimited

DEFAULT_CONCURRENT = 8
DEFAULT_SOCKETS = 4


def _cap(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of at least 1 (got {raw[:40]!r}).") from None
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1 (got {value}).")
    return value


class PersonCaps:
    """In-flight counters per person (their caller scope): a slot is taken before a request or a socket
    opens and given back when it ends, whatever way it ends."""

    def __init__(self, requests: int = DEFAULT_CONCURRENT, sockets: int = DEFAULT_SOCKETS) -> None:
        self.limits = {"request": requests, "socket": sockets, "stream": 1}
        self._held: dict[tuple[str, str], int] = {}
        self._waiting: dict[tuple[str, str], deque] = {}  # queued takers, oldest first (when_full = "queue")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PersonCaps":
        return cls(_cap(env, "SUBRELAY_USER_MAX_CONCURRENT", DEFAULT_CONCURRENT),
                   _cap(env, "SUBRELAY_USER_MAX_SOCKETS", DEFAULT_SOCKETS))

    def take(self, person: str, kind: str, limit: int | None = None) -> None:
        """Take one of ``person``'s ``kind`` slots (``limit``: their own cap), or a 429 naming the cap."""
        key = (person, kind)
        held = self._held.get(key, 0)
        limit = limit or self.limits[kind]
        if held >= limit:
            raise self._full(person, kind, held, limit)
        self._held[key] = held + 1

    def _full(self, person: str, kind: str, held: int, limit: int) -> RateLimited:
        if kind == "stream":  # a deployment cap on one upstream key
            return RateLimited(f"The team's key {person.partition(':')[2]!r} has {held} streams open, its cap "
                               f"(max_concurrent={limit}); try again shortly.", retry_after=1.0,
                               code="upstream_key_busy")
        what = ("requests in flight", "SUBRELAY_USER_MAX_CONCURRENT") if kind == "request" else (
            "open sockets", "SUBRELAY_USER_MAX_SOCKETS")
        return RateLimited(f"You have {held} {what[0]} on this server, the most one person may ({what[1]}={limit}); "
                           "wait for one to finish.", retry_after=1.0, code="too_many_concurrent_requests")

    async def acquire(self, person: str, kind: str, limit: int | None = None, wait: float = 0.0) -> None:
        """:meth:`take`, or with ``wait`` > 0 queue (first come, first served) up to ``wait`` seconds
        for a slot before the 429."""
        key = (person, kind)
        limit = limit or self.limits[kind]
        queue = self._waiting.get(key)
        if self._held.get(key, 0) < limit and not queue or wait <= 0:
            self.take(person, kind, limit)
            return
        deadline = time.monotonic() + wait
        turn = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        queue.append(turn)
        try:
            while self._held.get(key, 0) >= limit or queue[0] is not turn:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._full(person, kind, self._held.get(key, 0), limit)
                try:
                    await asyncio.wait_for(asyncio.shield(turn), left)
                except TimeoutError:
                    continue
                turn = asyncio.get_running_loop().create_future()
                queue[0] = turn
            self._held[key] = self._held.get(key, 0) + 1
        finally:
            if turn in queue:
                queue.remove(turn)
            if queue:
                _wake(queue[0])
            else:
                self._waiting.pop(key, None)

    def give_back(self, person: str, kind: str) -> None:
        key = (person, kind)
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        queue = self._waiting.get(key)
        if queue:
            _wake(queue[0])

    def held(self, person: str, kind: str) -> int:
        return self._held.get((person, kind), 0)


def _wake(turn: asyncio.Future) -> None:
    if not turn.done():
        turn.set_result(None)
