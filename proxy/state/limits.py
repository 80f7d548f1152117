"""Limit reservations kept in memory, for a team store served by one process (the default
``subrelay serve``): the same sliding-window log as the stores' own ``reserve``/``settle``, with no
disk write on the request path. Several workers or replicas reserve in the shared store instead.

Each check-and-reserve runs without an ``await`` inside, so on the event loop it is atomic: a limit of
N admits exactly N however requests race.

Memory is bounded whatever the traffic: a window does not keep one entry per reservation (a monthly
budget would hold every request of a busy month) but sums them into at most :data:`BUCKETS` + 1 buckets,
each the reservations that end within ``window / BUCKETS`` of its first one. A bucket is freed when its
*last* reservation ends, so a reservation may be held up to that long past its own end, never less: a
limit can only be stricter for it, never looser. A calendar period (a day's tokens, a month's budget)
ends for all its reservations at once: one bucket. A settle adjusts the very bucket its reservation
went into (the reservation carries it), so a settled amount leaves the window exactly when it would have.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from proxy.state.team import LimitRule, Refusal, Reservation

BUCKETS = 256  # per window: a reservation is held at most window / BUCKETS past its end


class _Window:
    __slots__ = ("buckets", "total", "width")

    def __init__(self, window: float) -> None:
        self.buckets: deque[list] = deque()  # [ends at, amount, first end, live], oldest first
        self.total = 0
        self.width = window / BUCKETS  # fixed for the key: its rules share one window length

    def expire(self, now: float) -> None:
        buckets = self.buckets
        while buckets and buckets[0][0] <= now:
            bucket = buckets.popleft()
            bucket[3] = False  # a settle that comes later changes nothing
            self.total -= bucket[1]

    def hold(self, amount: int, ends: float) -> list:
        """Add ``amount`` until ``ends`` (or a little later, with the bucket it joins)."""
        buckets = self.buckets
        last = buckets[-1] if buckets else None
        if last is not None and ends <= last[2] + self.width:  # joins the newest bucket (or ends before it)
            if ends > last[0]:
                last[0] = ends
            last[1] += amount
        else:
            last = [ends, amount, ends, True]
            buckets.append(last)
        self.total += amount
        return last


class _Held(Reservation):
    """A reservation of this limiter: per part, the window and bucket it went into and what it holds there."""

    __slots__ = ("held",)


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._max_keys = max_keys
        self._ids = itertools.count(1)  # reservation ids only need to be unique in this process

    async def reserve(self, rules: list[LimitRule]) -> Reservation | Refusal:
        now = self._clock()
        windows = self._windows
        for rule in rules:
            window = windows.get(rule.key)
            if window is None:
                continue
            window.expire(now)
            if window.total + rule.amount > rule.limit:
                return Refusal(rule.key, self._retry_after(window, rule, now), window.total)
        parts, totals, held = [], [], []
        for rule in rules:
            key = rule.key
            window = windows.get(key)
            if window is None:
                if len(windows) >= self._max_keys:
                    self._prune(now)
                window = windows[key] = _Window(rule.window)
            expires = now + rule.window
            held.append([window, window.hold(rule.amount, expires), rule.amount])
            parts.append((key, rule.amount, expires))
            totals.append(window.total)
        reservation = _Held(str(next(self._ids)), tuple(parts), tuple(totals))
        reservation.held = held
        return reservation

    async def settle(self, reservation: Reservation, actual: dict[str, int]) -> None:
        for (key, _, _), part in zip(reservation.parts, getattr(reservation, "held", ())):
            window, bucket, amount = part
            if key not in actual or not bucket[3] or self._windows.get(key) is not window:
                continue  # not settled, or its window has ended since
            new = max(int(actual[key]), 0)
            bucket[1] += new - amount
            window.total += new - amount
            part[2] = new  # what the bucket holds for it now (a second settle sets, never adds)

    def buckets(self, key: str) -> int:
        """How many buckets ``key``'s window holds (what its memory grows with)."""
        window = self._windows.get(key)
        return len(window.buckets) if window is not None else 0

    @staticmethod
    def _retry_after(window: _Window, rule: LimitRule, now: float) -> float:
        excess = window.total + rule.amount - rule.limit
        for ends, amount, _, _ in window.buckets:
            excess -= amount
            if excess <= 0:
                return max(ends - now, 0.001)
        return rule.window

    def _prune(self, now: float) -> None:
        for key in [key for key, window in self._windows.items() if (window.expire(now), window.total)[1] == 0]:
            del self._windows[key]
