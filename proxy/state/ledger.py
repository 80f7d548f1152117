"""The ledger store's interface: two append-only, hash-chained logs, ``requests`` (one entry per model
request, :data:`proxy.observe.chain.REQUEST_FIELDS`) and ``audit`` (one per admin action). Two backends:
:mod:`proxy.state.local.ledger` (one SQLite file beside the team store) and :mod:`proxy.state.redis.ledger`
(a bounded Redis stream per log, for replicas). The conformance suite (``tests/state/test_ledger_store.py``)
runs both through the same tests.

Appending links the entries to the log's head atomically (several workers or replicas append to one chain);
nothing here edits or deletes an entry except retention, which cuts the oldest end and keeps the hash of the
last entry it cut, so the chain's first remaining link still checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

LOGS = ("requests", "audit")


@dataclass(slots=True)
class Retention:
    """How much a log keeps: entries younger than ``days`` and at most ``max_entries`` of them (None: no cap)."""

    days: float | None = 90.0
    max_entries: int | None = 1_000_000


@dataclass(slots=True)
class LedgerQuery:
    """A page of a log, newest first. Filters are exact matches (``model`` matches the requested or the
    resolved model); ``status`` is a code (``429``) or a class (``4xx``, ``5xx``, ``error`` for ≥ 400);
    ``since``/``until`` are epoch seconds; ``before`` is the cursor a previous page returned."""

    person: str | None = None  # requests: the person; audit: the actor's credential text
    model: str | None = None  # requests only
    provider: str | None = None  # requests only
    status: str | None = None  # requests only
    action: str | None = None  # audit only
    target: str | None = None  # audit only
    since: float | None = None
    until: float | None = None
    before: str | None = None
    limit: int = 50


@dataclass(slots=True)
class Page:
    entries: list[dict] = field(default_factory=list)  # each: the log's fields plus seq, prev, hash
    next_cursor: str | None = None  # None: this was the last page


class LedgerStore(ABC):
    """Where the ledger and the audit log live. Every method is a coroutine (a network backend fits)."""

    @abstractmethod
    async def append(self, log: str, entries: list[dict], epoch: list[float]) -> None:
        """Link ``entries`` (dicts of the log's fields, oldest first; ``epoch`` their times in seconds) to
        the log's head and store them, all or none. Sets ``seq``, ``prev`` and ``hash`` on each."""

    @abstractmethod
    async def page(self, log: str, query: LedgerQuery) -> Page:
        """Entries matching ``query``, newest first, at most ``query.limit``."""

    @abstractmethod
    async def chain(self, log: str, cursor: str | None = None, *, batch: int = 5000) -> tuple[list[dict], str | None]:
        """Up to ``batch`` entries, oldest first, from the start or after ``cursor`` (what the previous call
        returned), and the cursor for the next call (None at the end): for verifying and exporting."""

    @abstractmethod
    async def head(self, log: str) -> tuple[int, str, int, str]:
        """(last seq, last hash, seq of the last entry retention cut, that entry's hash) — zeros and
        :data:`proxy.observe.chain.GENESIS` where there is none."""

    @abstractmethod
    async def prune(self, log: str, retention: Retention, now: float) -> int:
        """Cut the oldest entries beyond ``retention``; how many were cut."""

    async def close(self) -> None:
        """Release connections or files."""


def status_range(status: str) -> tuple[int, int]:
    """``429`` → (429, 429); ``4xx`` → (400, 499); ``error`` → (400, 999); ``ok`` → (100, 399)."""
    text = status.strip().lower()
    if text == "error":
        return 400, 999
    if text == "ok":
        return 100, 399
    if len(text) == 3 and text[0].isdigit() and text[1:] == "xx":
        return int(text[0]) * 100, int(text[0]) * 100 + 99
    if text.isdigit() and len(text) == 3:
        return int(text), int(text)
    raise ValueError("status must be a code (429), a class (4xx), 'ok' or 'error'")
