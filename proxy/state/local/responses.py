"""The ``previous_response_id`` record shared by the workers of one host, in a small SQLite file.

With ``--workers N`` a conversation's next turn may land on another process than its first, so the
record behind ``previous_response_id`` (:mod:`proxy.state.responses`) must be one per host. SQLite
(standard library) gives that with proper multi-process locking; the file lives in the workers'
state directory and is a cache: it is created 0600, written without fsync, and rebuilt empty if it
cannot be read. Same bounds as the in-memory store (bytes and age, oldest first), on the wall clock
because monotonic clocks are per process. Redis takes this job when replicas span hosts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.observe.redact import get_logger
from proxy.state.local.files import open_state_file
from proxy.state.responses import ResponseStore, current_owner, not_found, replayable

log = get_logger("subrelay.responses")

_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, items BLOB NOT NULL, "
           "size INTEGER NOT NULL, stored_at REAL NOT NULL, owner TEXT NOT NULL)",
           "CREATE INDEX IF NOT EXISTS responses_by_age ON responses (stored_at)")


class SharedResponseStore(ResponseStore):
    """:class:`ResponseStore`'s interface over one SQLite file that every worker opens."""

    def __init__(self, path: str, max_bytes: int = 64 * 1024 * 1024, max_age_seconds: float = 6 * 3600,
                 clock: Callable[[], float] = time.time, busy_timeout: float = 2.0) -> None:
        super().__init__(max_bytes, max_age_seconds, clock)
        self.path = path
        self._db = self._open(busy_timeout)

    def _open(self, busy_timeout: float, *, retry: bool = True) -> sqlite3.Connection:
        # Created 0600 before SQLite opens it (its -wal/-shm then get the same mode), so conversations
        # are never readable by others; a link, or a file of another user or open to others, is refused.
        os.close(open_state_file(self.path, os.O_RDWR | os.O_CREAT))
        for suffix in ("-wal", "-shm"):
            if os.path.lexists(self.path + suffix):
                os.close(open_state_file(self.path + suffix))
        db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # a cache: a crash may lose the last turns, never corrupt
            columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
            if columns and "owner" not in columns:  # a file from before records had owners: a cache, start again
                db.execute("DROP TABLE responses")
            for statement in _SCHEMA:
                db.execute(statement)
        except sqlite3.DatabaseError:
            db.close()
            if not retry:
                raise
            log.warning("the shared response store at %s could not be read; starting it again empty", self.path)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
            return self._open(busy_timeout, retry=False)
        return db

    def put(self, response_id: str, input_items: list[Any], output_items: list[dict[str, Any]],
            owner: str | None = None) -> None:
        blob = orjson.dumps([*input_items, *(replayable(item) for item in output_items)])
        if len(blob) > self.max_bytes:
            return
        try:
            with _Immediate(self._db):
                self._db.execute("INSERT OR REPLACE INTO responses (id, items, size, stored_at, owner) "
                                 "VALUES (?, ?, ?, ?, ?)",
                                 (response_id, blob, len(blob), self._clock(), owner or current_owner()))
                self._evict_rows()
        except sqlite3.Error as exc:  # the answer already reached the client: only the record is lost
            log.warning("could not record response %s for previous_response_id: %s", response_id[:40], exc)

    def history(self, response_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        oldest_allowed = self._clock() - self.max_age
        try:
            row = self._db.execute("SELECT items FROM responses WHERE id = ? AND owner = ? AND stored_at >= ?",
                                   (response_id, owner or current_owner(), oldest_allowed)).fetchone()
        except sqlite3.Error as exc:
            log.warning("could not read the shared response store: %s", exc)
            row = None
        if row is None:
            raise not_found(response_id, self)
        return orjson.loads(row[0])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def _evict_rows(self) -> None:
        self._db.execute("DELETE FROM responses WHERE stored_at < ?", (self._clock() - self.max_age,))
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0]
        if total <= self.max_bytes:
            return
        excess = total - self.max_bytes
        doomed: list[str] = []
        for response_id, size in self._db.execute("SELECT id, size FROM responses ORDER BY stored_at"):
            doomed.append(response_id)
            excess -= size
            if excess <= 0:
                break
        self._db.executemany("DELETE FROM responses WHERE id = ?", ((d,) for d in doomed))


class _Immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time across workers, waiting up to the busy timeout."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
