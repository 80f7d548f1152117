"""The request ledger's sink: one entry per model request, never content, written off the request path.

The edge hands each finished request's record to :meth:`RequestLedger.add` (an append to a list in memory:
no I/O, no formatting); a background task turns the records into entries every :data:`FLUSH_SECONDS` and
appends them to the ledger store in one batch (one transaction, or one Redis script), where they are
linked into the hash chain; it also applies retention now and then. If the store cannot answer, the batch
waits for the next flush (bounded: past :data:`MAX_PENDING` records, new ones are counted and dropped, and
the log says so) — a ledger outage never fails or slows a request.

What an entry holds is :data:`proxy.observe.chain.REQUEST_FIELDS`: who (a user's name or an owner key's id),
the door, the requested and the resolved model, route and provider, the routing decision (fallbacks, the
quota-aware switch, cooldown skips), status and error code, tokens, cost (when a price table prices it),
time to first byte and in total, the request id, and the client's name and version from its User-Agent.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Any

from proxy.observe.periodic import PeriodicFlush
from proxy.observe.cost import cost_of
from proxy.observe.redact import get_logger

log = get_logger("subrelay.ledger")
FLUSH_SECONDS = 1.0
PRUNE_SECONDS = 300.0
MAX_PENDING = 100_000
# The model endpoints: one ledger entry per request to one of these (health checks, the admin API… are not).
# The plain OpenAI endpoints (proxy.doors.plain), each its own door in the ledger.
PLAIN_DOORS = {"/v1/embeddings": "embeddings", "/v1/moderations": "moderations",
               "/v1/audio/transcriptions": "transcriptions", "/v1/images/generations": "images"}
PLAIN_PATHS = frozenset(PLAIN_DOORS)
LEDGER_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses",
                          "/v1/responses/compact", "/v1/messages", *PLAIN_PATHS})
_DOORS = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "responses",
          "/responses": "responses", "/v1/responses/compact": "compact", "/v1/messages": "messages", **PLAIN_DOORS}
_PRODUCT = re.compile(r"([A-Za-z0-9._+-]{1,64})(?:/([A-Za-z0-9._+-]{1,32})(?:\s+([0-9][A-Za-z0-9._+-]{0,31}))?)?")


class RequestLedger(PeriodicFlush):
    flush_seconds = FLUSH_SECONDS
    """Collects finished requests and writes them to a :class:`proxy.state.ledger.LedgerStore` in batches."""

    def __init__(self, store: Any, retention: Any = None, audit_retention: Any = None) -> None:
        self.store = store
        self.retention = retention
        self.audit_retention = audit_retention
        self._pending: list[tuple[Any, bytes | None, float]] = []
        self._rows: list[dict] = []  # built but not yet stored (the store did not answer)
        self._epochs: list[float] = []
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._next_prune = 0.0
        self._flushing = asyncio.Lock()  # the timer's flush and one asked for by a reader never interleave

    def add(self, record: Any, user_agent: bytes | None) -> None:
        """Keep ``record`` (a finished :class:`proxy.observe.metrics.RequestRecord`) for the next flush."""
        if len(self._pending) + len(self._rows) < MAX_PENDING:
            self._pending.append((record, user_agent, time.time()))
        else:
            self.dropped += 1

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for record, user_agent, finished in pending:
            row, epoch = entry_of(record, user_agent, finished)
            self._rows.append(row)
            self._epochs.append(epoch)
        if self._rows:
            rows, epochs = self._rows, self._epochs
            try:
                await self.store.append("requests", rows, epochs)
                self._rows, self._epochs = [], []
            except Exception as exc:  # noqa: BLE001 - the store's trouble is logged; requests never see it
                for row in rows:  # linked again on the next try
                    row.pop("seq", None), row.pop("prev", None), row.pop("hash", None)
                log.warning("could not write %d ledger entries (%s); keeping them for the next try", len(rows), exc)
        if self.dropped:
            log.warning("the ledger dropped %d entries: its store did not answer for too long", self.dropped)
            self.dropped = 0
        now = time.time()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_SECONDS
            await self.prune(now)

    async def prune(self, now: float) -> None:
        for name, retention in (("requests", self.retention), ("audit", self.audit_retention)):
            if retention is None:
                continue
            try:
                cut = await self.store.prune(name, retention, now)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not apply the %s log's retention (%s)", name, exc)
                continue
            if cut:
                log.info("retention cut the %d oldest entries of the %s log", cut, name)



def entry_of(record: Any, user_agent: bytes | None, finished: float) -> tuple[dict, float]:
    """A ledger entry from a finished request record, and the epoch second the request started."""
    ended = record.ended if record.ended is not None else record.started
    total = ended - record.started
    if total < 0.0:
        total = 0.0
    started = finished - total
    usage = record.usage
    client, version = client_of(user_agent)
    model, upstream_model, route, provider = record.model, record.upstream_model, record.route, record.provider
    entry = {
        "time": iso_time(started), "person": record.person, "door": _DOORS.get(record.path) or record.path[:40],
        "model": None if model in _NOTHING else model,
        "upstream_model": None if upstream_model in _NOTHING else upstream_model,
        "route": None if route in _NOTHING else route, "provider": None if provider in _NOTHING else provider,
        "decision": "; ".join(record.notes) if record.notes else None, "status": record.status, "error": record.error,
        "input_tokens": usage.prompt_tokens if usage else None,
        "cached_tokens": (usage.cached_tokens or 0) if usage else None,
        "output_tokens": usage.completion_tokens if usage else None,
        "reasoning_tokens": (usage.reasoning_tokens or 0) if usage else None,
        "cost": cost_of(record.provider, record.upstream_model, usage),
        "ttfb_ms": round((record.first_byte - record.started) * 1000) if record.first_byte else None,
        "total_ms": round(total * 1000), "request_id": record.request_id, "client": client,
        "client_version": version,
    }
    return entry, started


_clients: dict[bytes, tuple[str | None, str | None]] = {}  # User-Agent -> (client, version): a few distinct ones


def client_of(user_agent: bytes | None) -> tuple[str | None, str | None]:
    """:func:`parse_client`, remembered per User-Agent (bounded)."""
    if not user_agent:
        return None, None
    found = _clients.get(user_agent)
    if found is None:
        if len(_clients) >= 1024:
            _clients.clear()
        found = _clients[user_agent] = parse_client(user_agent)
    return found


def parse_client(user_agent: bytes | None) -> tuple[str | None, str | None]:
    """The client's name and version: the User-Agent's first product token (``codex_cli_rs/0.50.0 (…)``,
    ``OpenAI/Python 2.8.0``); nothing else of the header is kept."""
    if not user_agent:
        return None, None
    match = _PRODUCT.match(user_agent.decode("latin-1").strip())
    if match is None:
        return None, None
    name, version, after = match.groups()
    if version and not version[0].isdigit():  # "OpenAI/Python 2.8.0": the SDK and its language, then the version
        return f"{name}/{version}", after
    return name, version


_second: list = [-1, ""]  # the last whole second formatted, and its text


def iso_time(epoch: float) -> str:
    """``2026-12-07T14:02:03.123Z`` (the second's text worked out once per second)."""
    whole = int(epoch)
    if whole != _second[0]:
        _second[0], _second[1] = whole, datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{_second[1]}{int(epoch * 1000) % 1000:03d}Z"


_NOTHING = ("-", "")  # a record's "nothing known": the entry's None

