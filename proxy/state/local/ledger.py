"""The ledger in one SQLite file beside the team store (``ledger.sqlite3``, mode 0600, WAL): the embedded
default. A file of its own, not a table in ``team.sqlite3``: the team store answers key lookups from memory
until its WAL file changes, and a ledger write every second or two would keep invalidating that.

One table per log with the sequence number as its rowid (no second index for it), the entry's cells as one
JSON array, its hash as 32 bytes, and the columns the filters use. Appends take ``BEGIN IMMEDIATE``, so the
workers of one host extend one chain; every call runs in a thread, so a busy file never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading

import orjson

from proxy.observe.chain import FIELDS, GENESIS, linked
from proxy.state.ledger import LOGS, LedgerQuery, LedgerStore, Page, Retention, status_range
from proxy.state.team import StoreError

FILE = "ledger.sqlite3"
# Per log: which fields the filter columns hold (who, what, what2, whom, status).
_COLUMNS = {"requests": ("person", "model", "upstream_model", "provider", "status"),
            "audit": ("actor", "action", None, "target", None)}
_SCHEMA = [
    *(f"CREATE TABLE IF NOT EXISTS {log} (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, who TEXT, what TEXT, "
      f"what2 TEXT, whom TEXT, status INTEGER, cells TEXT NOT NULL, hash BLOB NOT NULL)" for log in LOGS),
    *(f"CREATE INDEX IF NOT EXISTS {log}_by_who ON {log} (who, seq)" for log in LOGS),
    "CREATE TABLE IF NOT EXISTS cuts (log TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL)",
]


class SqliteLedgerStore(LedgerStore):
    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = _open(path, busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"The ledger at {path} cannot be opened: {exc}") from None

    async def _call(self, function, *args):
        def locked():
            with self._lock:
                try:
                    return function(*args)
                except sqlite3.Error as exc:
                    raise StoreError(f"The ledger is busy or unwritable: {exc}") from None

        return await asyncio.to_thread(locked)

    # -- writing -----------------------------------------------------------------------------------
    async def append(self, log: str, entries: list[dict], epoch: list[float]) -> None:
        if entries:
            await self._call(self._append, log, entries, epoch)

    def _append(self, log: str, entries: list[dict], epoch: list[float]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq, last = self._head(log)[:2]
            _, values = linked(log, seq, last, entries)
            who, what, what2, whom, status = _COLUMNS[log]
            db.executemany(f"INSERT INTO {log} VALUES (?,?,?,?,?,?,?,?,?)", [
                (entry["seq"], ts, entry.get(who), entry.get(what), entry.get(what2) if what2 else None,
                 entry.get(whom), entry.get(status) if status else None,
                 orjson.dumps(fields).decode(), bytes.fromhex(entry["hash"]))
                for entry, ts, fields in zip(entries, epoch, values)])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def prune(self, log: str, retention: Retention, now: float) -> int:
        return await self._call(self._prune, log, retention, now)

    def _prune(self, log: str, retention: Retention, now: float) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cut = 0
            last = db.execute(f"SELECT max(seq) FROM {log}").fetchone()[0] or 0
            if retention.max_entries is not None:
                cut = max(cut, last - retention.max_entries)
            if retention.days is not None:  # the oldest entries first: the scan stops at the first young one
                young = db.execute(f"SELECT seq FROM {log} WHERE ts >= ? ORDER BY seq LIMIT 1",
                                   (now - retention.days * 86400,)).fetchone()
                cut = max(cut, young[0] - 1 if young else last)
            row = db.execute(f"SELECT seq, hash FROM {log} WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
                             (cut,)).fetchone() if cut else None
            removed = 0
            if row is not None:
                removed = db.execute(f"DELETE FROM {log} WHERE seq <= ?", (row[0],)).rowcount
                db.execute("INSERT INTO cuts VALUES (?,?,?) ON CONFLICT (log) DO UPDATE SET seq = excluded.seq, "
                           "hash = excluded.hash", (log, row[0], row[1].hex()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return removed

    # -- reading -----------------------------------------------------------------------------------
    async def head(self, log: str) -> tuple[int, str, int, str]:
        return await self._call(self._head, log)

    def _head(self, log: str) -> tuple[int, str, int, str]:
        cut = self._db.execute("SELECT seq, hash FROM cuts WHERE log = ?", (log,)).fetchone()
        cut_seq, cut_hash = (cut[0], cut[1]) if cut else (0, GENESIS)
        row = self._db.execute(f"SELECT seq, hash FROM {log} ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1].hex(), cut_seq, cut_hash) if row else (cut_seq, cut_hash, cut_seq, cut_hash)

    async def chain(self, log: str, cursor: str | None = None, *, batch: int = 5000) -> tuple[list[dict], str | None]:
        entries = await self._call(self._chain, log, int(cursor or 0), batch)
        return entries, str(entries[-1]["seq"]) if len(entries) == batch else None

    def _chain(self, log: str, after: int, batch: int) -> list[dict]:
        rows = self._db.execute(f"SELECT seq, cells, hash FROM {log} WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after, batch)).fetchall()
        if not rows:
            return []
        before = self._db.execute(f"SELECT hash FROM {log} WHERE seq = ?", (rows[0][0] - 1,)).fetchone()
        if before is not None:
            prev = before[0].hex()
        else:
            cut = self._db.execute("SELECT seq, hash FROM cuts WHERE log = ?", (log,)).fetchone()
            prev = cut[1] if cut and cut[0] == rows[0][0] - 1 else GENESIS if rows[0][0] == 1 else "?" * 64
        return _entries(log, rows, prev)

    async def page(self, log: str, query: LedgerQuery) -> Page:
        return await self._call(self._page, log, query)

    def _page(self, log: str, query: LedgerQuery) -> Page:
        where, args = [], []
        if query.before is not None:
            where.append("seq < ?")
            args.append(int(query.before))
        if query.person is not None:
            where.append("who = ?")
            args.append(query.person)
        if log == "requests":
            if query.model is not None:
                where.append("(what = ? OR what2 = ?)")
                args += [query.model, query.model]
            if query.provider is not None:
                where.append("whom = ?")
                args.append(query.provider)
            if query.status is not None:
                low, high = status_range(query.status)
                where.append("status BETWEEN ? AND ?")
                args += [low, high]
        else:
            if query.action is not None:
                where.append("what = ?")
                args.append(query.action)
            if query.target is not None:
                where.append("whom = ?")
                args.append(query.target)
        if query.since is not None:
            where.append("ts >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("ts < ?")
            args.append(query.until)
        sql = f"SELECT seq, cells, hash FROM {log}" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, query.limit + 1)).fetchall()
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        entries = []
        for index, (seq, cells, digest) in enumerate(rows):  # each entry's own predecessor: the next row when
            after = rows[index + 1] if index + 1 < len(rows) else None  # the page is contiguous there, else a read
            if after is not None and after[0] == seq - 1:
                prev = after[2].hex()
            else:
                before = self._db.execute(f"SELECT hash FROM {log} WHERE seq = ?", (seq - 1,)).fetchone()
                prev = before[0].hex() if before else self._cut_or_genesis(log, seq)
            entries.extend(_entries(log, [(seq, cells, digest)], prev))
        return Page(entries, str(rows[-1][0]) if more and rows else None)

    def _cut_or_genesis(self, log: str, seq: int) -> str:
        cut = self._db.execute("SELECT seq, hash FROM cuts WHERE log = ?", (log,)).fetchone()
        return cut[1] if cut and cut[0] == seq - 1 else GENESIS

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def _entries(log: str, rows: list[tuple], prev: str) -> list[dict]:
    names = FIELDS[log]
    entries = []
    for seq, cells, digest in rows:
        entry = dict(zip(names, orjson.loads(cells)))
        entry["seq"], entry["prev"], entry["hash"] = seq, prev, digest.hex()
        entries.append(entry)
        prev = entry["hash"]
    return entries


def _open(path: str, busy_timeout: float) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)  # created 0600 before SQLite opens it: who asked for what is private
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    old_umask = os.umask(0o077)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            db.execute(statement)
    finally:
        os.umask(old_umask)
    return db
