"""The team store in one SQLite file (standard library): the embedded default, shared by the workers
of one host. WAL, mode 0600, versioned migrations, ``BEGIN IMMEDIATE`` for every step that must be
atomic across processes (adding a user, the login compare-and-set, reserving against limits, leases).

Reads are plain indexed ``SELECT`` s (microseconds), so a revoked key fails on its next request on
every worker without any cache to go stale. Usage arrives in batches from the accounting flusher.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable

import orjson

from proxy.state.team import (
    USAGE_FIELDS,
    LimitRule,
    Refusal,
    Reservation,
    StoredLogin,
    StoreError,
    TeamStore,
    UsageRow,
    User,
    UserExists,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the first schema
        "CREATE TABLE users (name TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, key_id TEXT NOT NULL, "
        "models TEXT NOT NULL, rpm INTEGER, tpm INTEGER, daily_tokens INTEGER, fallback INTEGER NOT NULL, "
        "disabled INTEGER NOT NULL, created_at REAL NOT NULL, generation INTEGER NOT NULL)",
        "CREATE TABLE logins (name TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE, sealed TEXT NOT NULL, "
        "version INTEGER NOT NULL, account_id TEXT, email TEXT, plan_type TEXT, needs_login TEXT, "
        "updated_at REAL NOT NULL)",
        "CREATE TABLE reservations (id TEXT NOT NULL, key TEXT NOT NULL, amount INTEGER NOT NULL, "
        "expires_at REAL NOT NULL, PRIMARY KEY (id, key))",
        "CREATE INDEX reservations_by_key ON reservations (key, expires_at)",
        "CREATE TABLE leases (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL)",
        "CREATE TABLE plan_windows (login_key TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at REAL NOT NULL)",
        "CREATE TABLE usage (user TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, "
        "requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL "
        "DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, "
        "reasoning_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, day, model, provider))",
    ),
    (  # 2: device logins in progress, shared by the workers
        "CREATE TABLE pending_logins (handle TEXT PRIMARY KEY, sealed TEXT NOT NULL, owner TEXT NOT NULL, "
        "expires_at REAL NOT NULL)",
    ),
    (  # 3: limits per model
        "ALTER TABLE users ADD COLUMN model_limits TEXT NOT NULL DEFAULT '{}'",
    ),
    (  # 4: money (budgets per user, cost in usage) and the reasoning-effort ceiling
        "ALTER TABLE users ADD COLUMN budgets TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE users ADD COLUMN max_effort TEXT",
        "ALTER TABLE users ADD COLUMN max_concurrent INTEGER",
        "ALTER TABLE usage ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0",
    ),
    (  # 5: identity records (sessions, members' named keys, people linked to users)
        "CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, owner TEXT NOT NULL, "
        "expires_at REAL, PRIMARY KEY (kind, key))",
        "CREATE INDEX records_by_owner ON records (kind, owner)",
    ),
)
_USER_COLUMNS = ("name, key_hash, key_id, models, rpm, tpm, daily_tokens, fallback, disabled, created_at, generation, "
                 "model_limits, budgets, max_effort, max_concurrent")
_USER_MARKS = ",".join("?" * len(_USER_COLUMNS.split(",")))


class SqliteTeamStore(TeamStore):
    def __init__(self, path: str, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        try:
            self._db = _open(path, busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"The team store at {path} cannot be opened: {exc}") from None
        # Key lookups are answered from memory while nothing was written to the store since: a commit by
        # another process (a `subrelay users` command, another worker) changes the WAL file, and _writes counts our own commits; so a revoked key is never
        # served stale. Two stat calls cost far less than a read transaction (its locks and checks).
        self._writes = 0
        self._wal = path + "-wal"  # in WAL mode every commit (and checkpoint) changes this file
        self._seen: tuple = ()
        self._by_key: dict[str, User | None] = {}

    def _tx(self) -> "_Immediate":
        return _Immediate(self._db, self)

    # -- users ---------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        try:
            with self._tx():
                self._db.execute(f"INSERT INTO users ({_USER_COLUMNS}) VALUES ({_USER_MARKS})", _user_row(user))
        except sqlite3.IntegrityError:
            raise UserExists(f"A user named {user.name!r} exists already.") from None

    async def get_user(self, name: str) -> User | None:
        row = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return _user(row) if row else None

    async def list_users(self) -> list[User]:
        return [_user(row) for row in self._all(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name", ())]

    async def save_user(self, user: User) -> None:
        with self._tx():
            self._db.execute(f"UPDATE users SET ({_USER_COLUMNS}) = ({_USER_MARKS}) WHERE name = ?",
                             (*_user_row(user), user.name))

    async def remove_user(self, name: str) -> bool:
        with self._tx():
            self._db.execute("DELETE FROM logins WHERE name = ?", (name,))
            return self._db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        seen = (_stamp(self._wal), self._writes)
        if seen != self._seen or len(self._by_key) >= 4096:
            self._by_key.clear()
            self._seen = seen
        elif key_hash in self._by_key:
            return self._by_key[key_hash]
        row = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE key_hash = ?", (key_hash,))
        user = self._by_key[key_hash] = _user(row) if row else None
        return user

    async def has_users(self) -> bool:
        return self._one("SELECT 1 FROM users LIMIT 1", ()) is not None

    # -- logins --------------------------------------------------------------------------------
    async def get_login(self, name: str) -> StoredLogin | None:
        row = self._one("SELECT sealed, version, account_id, email, plan_type, needs_login, updated_at "
                        "FROM logins WHERE name = ?", (name,))
        return StoredLogin(*row) if row else None

    async def put_login(self, name: str, login: StoredLogin, *, expected_version: int | None) -> bool:
        with self._tx():
            row = self._db.execute("SELECT version FROM logins WHERE name = ?", (name,)).fetchone()
            if expected_version is not None and (row is None or row[0] != expected_version):
                return False
            if self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                return False
            self._db.execute("INSERT OR REPLACE INTO logins VALUES (?,?,?,?,?,?,?,?)",
                             (name, login.sealed, login.version, login.account_id, login.email, login.plan_type,
                              login.needs_login, login.updated_at or self._clock()))
            return True

    async def delete_login(self, name: str) -> bool:
        with self._tx():
            return self._db.execute("DELETE FROM logins WHERE name = ?", (name,)).rowcount > 0

    async def acquire_lease(self, key: str, token: str, ttl: float) -> bool:
        now = self._clock()
        with self._tx():
            row = self._db.execute("SELECT token, expires_at FROM leases WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] != token and row[1] > now:
                return False
            self._db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?)", (key, token, now + ttl))
            return True

    async def release_lease(self, key: str, token: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM leases WHERE key = ? AND token = ?", (key, token))

    # -- limits --------------------------------------------------------------------------------
    async def reserve(self, rules: list[LimitRule]) -> Reservation | Refusal:
        now = self._clock()
        reservation_id = uuid.uuid4().hex
        totals = []
        with self._tx():
            for rule in rules:
                self._db.execute("DELETE FROM reservations WHERE key = ? AND expires_at <= ?", (rule.key, now))
                used = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE key = ?",
                                        (rule.key,)).fetchone()[0]
                if used + rule.amount > rule.limit:
                    return Refusal(rule.key, self._retry_after(rule, used, now), used)
                totals.append(used + rule.amount)
            parts = tuple((rule.key, rule.amount, now + rule.window) for rule in rules)
            self._db.executemany("INSERT INTO reservations VALUES (?,?,?,?)",
                                 ((reservation_id, key, amount, expires) for key, amount, expires in parts))
        return Reservation(reservation_id, parts, tuple(totals))

    def _retry_after(self, rule: LimitRule, used: int, now: float) -> float:
        """When enough of the window's reservations will have expired for ``rule.amount`` to fit."""
        excess = used + rule.amount - rule.limit
        for amount, expires in self._db.execute(
                "SELECT amount, expires_at FROM reservations WHERE key = ? ORDER BY expires_at", (rule.key,)):
            excess -= amount
            if excess <= 0:
                return max(expires - now, 0.001)
        return rule.window

    async def settle(self, reservation: Reservation, actual: dict[str, int]) -> None:
        changes = [(max(int(actual[key]), 0), reservation.id, key) for key, _, _ in reservation.parts if key in actual]
        if changes:
            with self._tx():
                self._db.executemany("UPDATE reservations SET amount = ? WHERE id = ? AND key = ?", changes)

    # -- plan windows --------------------------------------------------------------------------
    async def put_plan_windows(self, login_key: str, windows: dict) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO plan_windows VALUES (?,?,?)",
                             (login_key, orjson.dumps(windows), self._clock()))

    async def get_plan_windows(self, login_key: str) -> dict | None:
        row = self._one("SELECT data FROM plan_windows WHERE login_key = ?", (login_key,))
        return orjson.loads(row[0]) if row else None

    # -- usage ---------------------------------------------------------------------------------
    async def add_usage(self, rows: list[UsageRow]) -> None:
        if not rows:
            return
        columns = ", ".join(USAGE_FIELDS)
        updates = ", ".join(f"{name} = {name} + excluded.{name}" for name in USAGE_FIELDS)
        with self._tx():
            self._db.executemany(
                f"INSERT INTO usage (user, day, model, provider, {columns}) VALUES (?,?,?,?,{','.join('?' * len(USAGE_FIELDS))}) "
                f"ON CONFLICT (user, day, model, provider) DO UPDATE SET {updates}",
                ((row.user, row.day, row.model, row.provider, *(getattr(row, name) for name in USAGE_FIELDS))
                 for row in rows))

    async def usage(self, *, user: str | None = None, since: str | None = None,
                    until: str | None = None) -> list[UsageRow]:
        query = f"SELECT user, day, model, provider, {', '.join(USAGE_FIELDS)} FROM usage WHERE 1=1"
        args: list = []
        for clause, value in (("user = ?", user), ("day >= ?", since), ("day <= ?", until)):
            if value is not None:
                query += f" AND {clause}"
                args.append(value)
        return [UsageRow(*row) for row in self._all(query + " ORDER BY day, user, model, provider", tuple(args))]

    # -- pending device logins -----------------------------------------------------------------
    async def put_pending(self, handle: str, sealed: str, owner: str, expires_at: float) -> None:
        with self._tx():
            self._db.execute("DELETE FROM pending_logins WHERE expires_at <= ?", (self._clock(),))
            self._db.execute("INSERT OR REPLACE INTO pending_logins VALUES (?,?,?,?)", (handle, sealed, owner, expires_at))

    async def get_pending(self, handle: str) -> tuple[str, str] | None:
        row = self._one("SELECT sealed, owner FROM pending_logins WHERE handle = ? AND expires_at > ?",
                        (handle, self._clock()))
        return (row[0], row[1]) if row else None

    async def delete_pending(self, handle: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM pending_logins WHERE handle = ?", (handle,))

    async def count_pending(self) -> int:
        return self._one("SELECT COUNT(*) FROM pending_logins WHERE expires_at > ?", (self._clock(),))[0]

    async def clear_pending(self, owner: str) -> int:
        with self._tx():
            self._db.execute("DELETE FROM pending_logins WHERE expires_at <= ?", (self._clock(),))
            return self._db.execute("DELETE FROM pending_logins WHERE owner = ?", (owner,)).rowcount

    # -- identity records ----------------------------------------------------------------------
    async def put_record(self, kind: str, key: str, value: bytes, owner: str, expires_at: float | None) -> None:
        with self._tx():
            self._db.execute("DELETE FROM records WHERE kind = ? AND expires_at <= ?", (kind, self._clock()))
            self._db.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?)", (kind, key, value, owner, expires_at))

    async def get_record(self, kind: str, key: str) -> tuple[bytes, str] | None:
        row = self._one("SELECT value, owner FROM records WHERE kind = ? AND key = ? AND "
                        "(expires_at IS NULL OR expires_at > ?)", (kind, key, self._clock()))
        return (bytes(row[0]), row[1]) if row else None

    async def delete_record(self, kind: str, key: str) -> bool:
        with self._tx():
            return self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0

    async def records_of(self, kind: str, owner: str) -> list[tuple[str, bytes]]:
        rows = self._all("SELECT key, value FROM records WHERE kind = ? AND owner = ? AND "
                         "(expires_at IS NULL OR expires_at > ?) ORDER BY key", (kind, owner, self._clock()))
        return [(key, bytes(value)) for key, value in rows]

    async def delete_records_of(self, kind: str, owner: str) -> int:
        with self._tx():
            self._db.execute("DELETE FROM records WHERE kind = ? AND expires_at <= ?", (kind, self._clock()))
            return self._db.execute("DELETE FROM records WHERE kind = ? AND owner = ?", (kind, owner)).rowcount

    # -- lifecycle -----------------------------------------------------------------------------
    async def ping(self) -> bool:
        return self._one("SELECT 1", ()) is not None

    async def close(self) -> None:
        self._db.close()

    def backup(self, path: str) -> None:
        """An online, consistent copy (SQLite's backup API), created 0600."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        target = sqlite3.connect(path)
        try:
            self._db.backup(target)
        finally:
            target.close()

    def _one(self, query: str, args: tuple):
        try:
            return self._db.execute(query, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"The team store could not be read: {exc}") from None

    def _all(self, query: str, args: tuple) -> list:
        try:
            return self._db.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"The team store could not be read: {exc}") from None


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _open(path: str, busy_timeout: float) -> sqlite3.Connection:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)  # created 0600 before SQLite opens it: logins are sealed, usage and names are private
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    old_umask = os.umask(0o077)  # the -wal and -shm files SQLite creates are private too
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
    finally:
        os.umask(old_umask)
    return db


def _migrate(db: sqlite3.Connection) -> None:
    with _Immediate(db):
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > len(MIGRATIONS):
            raise sqlite3.DatabaseError(f"the file is from a newer subrelay (schema {current})")
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))
        else:
            db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))


def _user_row(user: User) -> tuple:
    return (user.name, user.key_hash, user.key_id, orjson.dumps(list(user.models)).decode(), user.rpm, user.tpm,
            user.daily_tokens, int(user.fallback), int(user.disabled), user.created_at, user.generation,
            orjson.dumps(user.model_limits).decode(), orjson.dumps(user.budgets).decode(), user.max_effort,
            user.max_concurrent)


def _user(row: tuple) -> User:
    (name, key_hash, key_id, models, rpm, tpm, daily, fallback, disabled, created, generation, model_limits,
     budgets, max_effort, max_concurrent) = row
    return User(name, key_hash, key_id, tuple(orjson.loads(models)), rpm, tpm, daily, bool(fallback), bool(disabled),
                created, generation, orjson.loads(model_limits), orjson.loads(budgets), max_effort,
                max_concurrent)


class _Immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time across workers (waiting up to the busy timeout)."""

    def __init__(self, db: sqlite3.Connection, store: "SqliteTeamStore | None" = None) -> None:
        self.db = db
        self.store = store

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"The team store is busy or unwritable: {exc}") from None

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        if self.store is not None:
            self.store._writes += 1  # this connection's own writes do not move PRAGMA data_version
