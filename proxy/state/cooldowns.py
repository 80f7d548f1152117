"""Cooldowns: when a limited upstream target may be tried again.

This in-memory form serves one worker; :mod:`proxy.state.local.cooldowns` shares it between the
workers of one host. Keyed by what the upstream actually limited (provider, credential identity,
model), so one person's limit never touches another's.
"""

from __future__ import annotations

import time

from proxy.errors import sane_wait

CooldownKey = tuple[str, str, str]  # (provider, credential identity, model or "*")
_MAX_COOLDOWNS = 4096



class Cooldowns:
    """When a limited target may be tried again, keyed by what the upstream actually limited.

    A key is (provider, credential identity, model), with model ``"*"`` for a limit on the whole
    credential (a ChatGPT plan's usage limit). Cooldowns only decide which target of a fallback
    chain to try first; they never refuse a request on their own (see :mod:`proxy.upstream.dispatch`).
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._until: dict[CooldownKey, float] = {}
        self._clock = clock

    def note(self, key: CooldownKey, seconds: float | None) -> None:
        seconds = sane_wait(seconds)
        if not seconds:
            return
        if len(self._until) >= _MAX_COOLDOWNS:
            self._prune()
        self._until[key] = max(self._until.get(key, 0.0), self._clock() + seconds)

    def remaining(self, provider: str, identity: str, model: str) -> float:
        """Seconds until ``model`` on this credential may be tried (0 when it may be now)."""
        return max(self._left((provider, identity, model)), self._left((provider, identity, "*")))

    def active(self) -> int:
        self._prune()
        return len(self._until)

    def _left(self, key: CooldownKey) -> float:
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        while len(self._until) >= _MAX_COOLDOWNS:  # still full: forget the soonest to end
            del self._until[min(self._until, key=self._until.__getitem__)]
