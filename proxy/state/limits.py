"""Limit reservations kept in memory, for a team store served by one process (the default
``subrelay serve``): the same sliding-window log as the stores' own ``reserve``/``settle``, with no
disk write on the request path. Several workers or replicas reserve in the shared store instead.

Each check-and-reserve runs without an ``await`` inside, so on the event loop it is atomic: a limit of
N admits exactly N however requests race.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from proxy.state.team import LimitRule, Refusal, Reservation


class _Window:
    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list] = deque()  # [expires_at, amount, reservation id], oldest first
        self.total = 0

    def expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now:
            self.total -= self.entries.popleft()[1]


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._max_keys = max_keys
        self._ids = itertools.count(1)  # reservation ids only need to be unique in this process

    async def reserve(self, rules: list[LimitRule]) -> Reservation | Refusal:
        now = self._clock()
        for rule in rules:
            window = self._windows.get(rule.key)
            if window is None:
                continue
            window.expire(now)
            if window.total + rule.amount > rule.limit:
                return Refusal(rule.key, self._retry_after(window, rule, now), window.total)
        reservation_id = str(next(self._ids))
        parts, totals = [], []
        for rule in rules:
            window = self._windows.get(rule.key)
            if window is None:
                if len(self._windows) >= self._max_keys:
                    self._prune(now)
                window = self._windows[rule.key] = _Window()
            expires = now + rule.window
            window.entries.append([expires, rule.amount, reservation_id])
            window.total += rule.amount
            parts.append((rule.key, rule.amount, expires))
            totals.append(window.total)
        return Reservation(reservation_id, tuple(parts), tuple(totals))

    async def settle(self, reservation: Reservation, actual: dict[str, int]) -> None:
        for key, amount, _ in reservation.parts:
            if key not in actual:
                continue
            window = self._windows.get(key)
            if window is None:
                continue
            for entry in reversed(window.entries):  # recent reservations sit at the end
                if entry[2] == reservation.id:
                    new = max(int(actual[key]), 0)
                    window.total += new - entry[1]
                    entry[1] = new
                    break

    @staticmethod
    def _retry_after(window: _Window, rule: LimitRule, now: float) -> float:
        excess = window.total + rule.amount - rule.limit
        for expires, amount, _ in window.entries:
            excess -= amount
            if excess <= 0:
                return max(expires - now, 0.001)
        return rule.window

    def _prune(self, now: float) -> None:
        for key in [key for key, window in self._windows.items() if (window.expire(now), window.total)[1] == 0]:
            del self._windows[key]
