"""Cooldowns shared by the workers of one host (``subrelay serve --workers N``), through a small file.

A usage limit one worker saw must steer the others' fallbacks too. Each worker keeps its
:class:`proxy.upstream.routing.Cooldowns` in memory and, on every change, merges it into a JSON file under an
``flock`` (wall-clock deadlines, since monotonic clocks are per process); before deciding it re-reads
the file only when the file changed. Redis takes this job when replicas span hosts.
"""

from __future__ import annotations

import os
import time

import orjson

from proxy.state.cooldowns import CooldownKey, Cooldowns
from proxy.state.local.files import file_stamp, lock, read_state_file, write_state_json

_SEP = "\x1f"


class SharedCooldowns(Cooldowns):
    def __init__(self, path: str) -> None:
        super().__init__(clock=time.time)
        self.path = path
        self._stamp: tuple[int, int, int] | None = None

    def note(self, key: CooldownKey, seconds: float | None) -> None:
        super().note(key, seconds)
        self._publish()

    def remaining(self, provider: str, identity: str, model: str) -> float:
        self._sync()
        return super().remaining(provider, identity, model)

    def active(self) -> int:
        self._sync()
        return super().active()

    def _sync(self) -> None:
        stamp = file_stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        self._merge(self._read())

    def _read(self) -> dict[CooldownKey, float]:
        try:
            raw = orjson.loads(read_state_file(self.path) or b"{}")
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(raw, dict):
            return {}
        now = time.time()
        return {tuple(key.split(_SEP)): float(until) for key, until in raw.items()
                if isinstance(until, (int, float)) and until > now and key.count(_SEP) == 2}

    def _merge(self, other: dict[CooldownKey, float]) -> None:
        for key, until in other.items():
            if until > self._until.get(key, 0.0):
                self._until[key] = until

    def _publish(self) -> None:
        fd = lock(self.path + ".lock", wait=True)
        if fd is None:
            return  # sharing is best effort: this worker still honours its own cooldowns
        try:
            self._merge(self._read())
            now = time.time()
            write_state_json(self.path, {_SEP.join(key): until for key, until in self._until.items() if until > now})
        except OSError:
            pass
        finally:
            os.close(fd)
