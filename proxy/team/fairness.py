"""Fair shares of what one server holds for everyone: concurrent model requests and open sockets.

Every bounded thing a server has (upstream connections, client connection slots, the event loop's
time) is shared by all its members; without a cap per person, one member's batch of non-reading
streams or idle sockets holds them all and the others get 503 or 504. The caps are per person and
per process (each replica enforces its own), checked at the edge before anything is opened:
``SUBRELAY_USER_MAX_CONCURRENT`` requests in flight (default 8) and ``SUBRELAY_USER_MAX_SOCKETS``
open Responses sockets (default 4). The owner's keys are not capped: the server is theirs.
"""

from __future__ import annotations

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
        self.limits = {"request": requests, "socket": sockets}
        self._held: dict[tuple[str, str], int] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "PersonCaps":
        return cls(_cap(env, "SUBRELAY_USER_MAX_CONCURRENT", DEFAULT_CONCURRENT),
                   _cap(env, "SUBRELAY_USER_MAX_SOCKETS", DEFAULT_SOCKETS))

    def take(self, person: str, kind: str) -> None:
        """Take one of ``person``'s ``kind`` slots, or a 429 naming the cap."""
        key = (person, kind)
        held = self._held.get(key, 0)
        limit = self.limits[kind]
        if held >= limit:
            what = ("requests in flight", "SUBRELAY_USER_MAX_CONCURRENT") if kind == "request" else (
                "open sockets", "SUBRELAY_USER_MAX_SOCKETS")
            raise RateLimited(f"You have {held} {what[0]} on this server, the most one person may ({what[1]}={limit}); "
                              "wait for one to finish.", retry_after=1.0, code="too_many_concurrent_requests")
        self._held[key] = held + 1

    def give_back(self, person: str, kind: str) -> None:
        key = (person, kind)
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, person: str, kind: str) -> int:
        return self._held.get((person, kind), 0)
