"""A shared slot: one small record that every worker or replica can read, replace, and take turns to
refresh (a non-blocking lock elects who does). The live model catalogues share themselves through one, so
N workers or replicas cost the vendor one catalogue read per interval, not N.

Two kinds: :class:`proxy.state.local.files.FileSlot` (the workers of one host, a file in the state
directory) and :class:`proxy.state.redis.slot.RedisSlot` (replicas on several hosts).
"""

from __future__ import annotations

from typing import Any, Protocol


class SharedSlot(Protocol):
    async def stamp(self) -> Any:
        """What changes whenever the record is replaced (cheap: a re-read only follows a change)."""

    async def read(self) -> bytes | None:
        """The record as written, or None (missing, refused, unreachable)."""

    async def write(self, record: dict[str, Any]) -> Any:
        """Replace the record; returns its new stamp."""

    async def try_lock(self) -> Any | None:
        """A handle when this process may refresh now, None when another holds the turn."""

    async def unlock(self, handle: Any) -> None: ...
