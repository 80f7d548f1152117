"""The team store's interface: people, their client keys (as hashes), their own logins (encrypted),
their limits and their usage. One interface, two backends: :mod:`proxy.state.local.team` (one SQLite
file, the embedded default) and :mod:`proxy.state.redis.team` (replicas on several hosts).

Everything a race could break is one atomic step inside the backend: adding a user (names and key
hashes are unique), the compare-and-set on a login's version (an older refresh never overwrites a
newer login), the limit check together with its reservation (N concurrent requests cannot all pass a
limit of 1) and the refresh lease (one refresh per login at a time, freed when its holder dies).
The conformance suite (``tests/state/test_team_store.py``) runs every backend through the same tests.
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from proxy.hub.caller import person_key


# The owner's own ChatGPT login (SUBRELAY_API_KEYS callers, or no keys) when it lives in a network store
# (Redis: replicas share nothing else). Not a valid user name, so no user can ever be signed with it.
OWNER_LOGIN = "_owner"


def new_login_version() -> int:
    """The first version of a *new* login (a first login, a replacement, a re-login after a logout or
    under a re-added name): milliseconds since the epoch times ten plus a random digit, so it is unique
    for all time per name. Every later save of the same login (a refresh) raises it by one, far less
    often than the clock moves, so no successor can ever start at a version a cached login had: a cache
    keyed by version never mistakes a replaced login for the one that replaced it. (Below 10^14, so
    it survives Lua's number formatting in the Redis scripts exactly.)"""
    return int(time.time() * 1000) * 10 + secrets.randbelow(10)


class StoreError(Exception):
    """The store cannot answer (unreachable, damaged): a 503 ``state_store_unavailable`` at the door."""


class UserExists(StoreError):
    """A user of that name exists already."""


@dataclass(slots=True)
class User:
    name: str
    key_hash: str  # SHA-256 hex of the client key; the key itself is shown once and never stored
    key_id: str  # the first 12 hex digits of the hash: tells keys apart in listings and logs
    models: tuple[str, ...] = ()  # glob patterns this user may call; empty: every model
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute
    daily_tokens: int | None = None  # tokens per UTC day
    fallback: bool = False  # may switch to a configured fallback before the plan's limit is hit
    disabled: bool = False
    created_at: float = 0.0
    generation: int = 1  # raised by every change, so caches can tell they are stale
    # Limits for some models only: glob -> {"rpm"|"tpm"|"daily_tokens": n}; the first matching glob applies.
    model_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # Money budgets: "<period>[@<provider>]" -> dollars as an exact decimal string (proxy.money.budgets).
    budgets: dict[str, str] = field(default_factory=dict)
    # The highest reasoning effort this user may ask for (higher is clamped, and said in a header); None: any.
    max_effort: str | None = None
    max_concurrent: int | None = None  # their own cap on requests in flight (None: SUBRELAY_USER_MAX_CONCURRENT)

    @property
    def person(self) -> str:
        """The key this person's limit and budget counters and usage rows are kept under
        (:func:`proxy.hub.caller.person_key`): a re-added name starts from nothing."""
        return person_key(self.name, self.created_at)

    def public(self) -> dict[str, Any]:
        """What an admin may see: everything but the key hash."""
        return {"name": self.name, "key_id": self.key_id, "models": list(self.models), "rpm": self.rpm,
                "tpm": self.tpm, "daily_tokens": self.daily_tokens, "fallback": self.fallback,
                "disabled": self.disabled, "created_at": self.created_at, "model_limits": dict(self.model_limits),
                "budgets": dict(self.budgets), "max_effort": self.max_effort,
                "max_concurrent": self.max_concurrent}


@dataclass(slots=True)
class StoredLogin:
    """A person's ChatGPT login: the sealed tokens plus what may be shown about it."""

    sealed: str  # AES-256-GCM ciphertext of the auth JSON (proxy.team.secretbox)
    version: int  # compare-and-set guard: raised by every save
    account_id: str | None = None
    email: str | None = None
    plan_type: str | None = None
    needs_login: str | None = None  # why this login must be renewed (e.g. refresh_token_reused)
    updated_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "email": self.email, "plan_type": self.plan_type,
                "needs_login": self.needs_login, "updated_at": self.updated_at}


@dataclass(slots=True)  # not frozen: built on every limited request, and frozen init is slow
class LimitRule:
    """One limit to reserve against: ``amount`` of ``limit`` per ``window`` seconds under ``key``."""

    key: str  # e.g. "alice:rpm", "alice:tpm", "alice:day:2026-12-01", "alice:usd:month:2026-12"
    limit: int
    window: float
    amount: int


@dataclass(slots=True)  # not frozen: built on every limited request, and frozen init is slow
class Reservation:
    """Granted amounts, settled later against what the request really used."""

    id: str
    parts: tuple[tuple[str, int, float], ...]  # (key, amount, expires_at)
    # Per part, what its window holds with this reservation in (soft thresholds need no other read).
    totals: tuple[int, ...] = ()


@dataclass(slots=True)  # not frozen: built on every limited request, and frozen init is slow
class Refusal:
    key: str
    retry_after: float
    used: int = 0  # what the refused rule's window held already (a budget says what is left)


@dataclass(slots=True)
class UsageRow:
    user: str
    day: str  # YYYY-MM-DD (UTC)
    model: str
    provider: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0  # money spent, in micro-dollars (proxy.money.prices; a plan's requests cost 0)
    unpriced: int = 0  # requests on a paid route whose price is unknown (their cost is not in cost_micros)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: "UsageRow") -> None:
        for name in USAGE_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Admitted:
    """The one step on a team user's common path (:meth:`TeamStore.admit`).

    ``state`` is ``ok`` (``reservation`` holds the reserved limits), ``refused`` (``refusal`` says which
    limit and when) or ``stale`` (the key no longer belongs to this user at this generation, or the user
    is disabled: the request is refused as unauthenticated). ``login_version``, ``account_id`` and
    ``windows`` describe the user's own login, so signing and the quota-aware fallback need no other read.
    """

    state: str
    reservation: Reservation | None = None
    refusal: Refusal | None = None
    login_version: int | None = None
    account_id: str | None = None
    windows: dict[str, Any] | None = None


USAGE_FIELDS = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens",
                "cost_micros", "unpriced")


class TeamStore(ABC):
    """What team mode keeps. Every method is a coroutine so a network backend fits behind it."""

    # -- users and keys ------------------------------------------------------------------------
    @abstractmethod
    async def add_user(self, user: User) -> None:
        """Add ``user``; :class:`UserExists` if the name is taken."""

    @abstractmethod
    async def get_user(self, name: str) -> User | None: ...

    @abstractmethod
    async def list_users(self) -> list[User]: ...

    @abstractmethod
    async def save_user(self, user: User) -> None:
        """Replace the record of an existing user (its generation raised by the caller)."""

    @abstractmethod
    async def remove_user(self, name: str) -> bool:
        """Remove the user, their login and key; False if there was none."""

    @abstractmethod
    async def user_by_key_hash(self, key_hash: str) -> User | None:
        """The user whose key hashes to ``key_hash`` (read fresh: a revoked key fails at once)."""

    @abstractmethod
    async def has_users(self) -> bool: ...

    async def owner_state(self) -> tuple[bool, "StoredLogin | None"]:
        """Whether any user exists, and the owner's login kept in the store (:data:`OWNER_LOGIN`): what an
        owner's request needs, in one round trip on a network store."""
        return await self.has_users(), await self.get_login(OWNER_LOGIN) if self.remote else None

    # -- logins --------------------------------------------------------------------------------
    @abstractmethod
    async def get_login(self, name: str) -> StoredLogin | None: ...

    @abstractmethod
    async def put_login(self, name: str, login: StoredLogin, *, expected_version: int | None) -> bool:
        """Save ``login`` if the stored version is ``expected_version`` (None: there must be none
        stored, or any version for a new login replacing the old); False when another writer won."""

    @abstractmethod
    async def delete_login(self, name: str) -> bool: ...

    @abstractmethod
    async def acquire_lease(self, key: str, token: str, ttl: float) -> bool:
        """Take the lease ``key`` for ``ttl`` seconds unless another token holds it."""

    @abstractmethod
    async def release_lease(self, key: str, token: str) -> None:
        """Release the lease only if ``token`` still holds it (compare-and-delete)."""

    # -- limits --------------------------------------------------------------------------------
    @abstractmethod
    async def reserve(self, rules: list[LimitRule]) -> Reservation | Refusal:
        """Check every rule and reserve them all, or none: one atomic step."""

    @abstractmethod
    async def settle(self, reservation: Reservation, actual: dict[str, int]) -> None:
        """Replace reserved amounts by ``actual`` ones (by key; missing keys keep the reservation)."""

    # -- plan windows (per login) ----------------------------------------------------------------
    @abstractmethod
    async def put_plan_windows(self, login_key: str, windows: dict[str, Any]) -> None: ...

    @abstractmethod
    async def get_plan_windows(self, login_key: str) -> dict[str, Any] | None: ...

    # -- usage ---------------------------------------------------------------------------------
    @abstractmethod
    async def add_usage(self, rows: list[UsageRow]) -> None:
        """Add a batch of usage (written by the accounting flusher, never per request)."""

    @abstractmethod
    async def usage(self, *, user: str | None = None, since: str | None = None,
                    until: str | None = None) -> list[UsageRow]:
        """Usage rows (per user, day, model, provider), days within [since, until]."""

    # -- device logins in progress (started on one replica, polled on another) ----------------------
    @abstractmethod
    async def put_pending(self, handle: str, sealed: str, owner: str, expires_at: float) -> None: ...

    @abstractmethod
    async def get_pending(self, handle: str) -> tuple[str, str] | None:
        """(sealed, owner) of an unexpired pending login."""

    @abstractmethod
    async def delete_pending(self, handle: str) -> None: ...

    @abstractmethod
    async def count_pending(self) -> int:
        """Unexpired pending logins (the cap is checked before asking the auth server)."""

    @abstractmethod
    async def clear_pending(self, owner: str) -> int: ...

    # -- identity records (sign-in sessions, members' own keys, people linked to users) ------------
    # One small keyed table with an owner and an optional expiry, so sessions, named keys and links
    # share one tested primitive instead of a table each. ``kind`` namespaces the keys.
    @abstractmethod
    async def put_record(self, kind: str, key: str, value: bytes, owner: str, expires_at: float | None) -> None:
        """Create or replace the record ``kind``/``key`` (``expires_at``: epoch seconds, None: never).
        An empty ``owner`` means nobody will list it by owner (a backend may skip indexing it)."""

    @abstractmethod
    async def get_record(self, kind: str, key: str) -> tuple[bytes, str] | None:
        """(value, owner) of an unexpired record."""

    @abstractmethod
    async def delete_record(self, kind: str, key: str) -> bool: ...

    @abstractmethod
    async def records_of(self, kind: str, owner: str) -> list[tuple[str, bytes]]:
        """Every unexpired (key, value) of ``kind`` that ``owner`` holds, by key."""

    @abstractmethod
    async def delete_records_of(self, kind: str, owner: str) -> int:
        """Remove every record of ``kind`` that ``owner`` holds (sign out everywhere, a user removed)."""

    # -- the common path in one step ---------------------------------------------------------------
    remote = False  # a network store: worth caching key lookups behind admit()'s generation check

    async def admit(self, key_hash: str, name: str, generation: int, rules: list[LimitRule]) -> Admitted:
        """Check that ``key_hash`` is still ``name``'s key at ``generation`` and enabled, reserve
        ``rules``, and describe the user's login: atomically, and one round trip on a network store.
        This default composes the other methods (a local store's reads cost microseconds)."""
        user = await self.user_by_key_hash(key_hash)
        if user is None or user.name != name or user.generation != generation or user.disabled:
            return Admitted("stale")
        result = await self.reserve(rules) if rules else None
        if isinstance(result, Refusal):
            return Admitted("refused", refusal=result)
        login = await self.get_login(name)
        account_id = login.account_id if login else None
        windows = await self.get_plan_windows(f"account:{account_id}") if account_id else None
        return Admitted("ok", result, None, login.version if login else None, account_id, windows)

    # -- lifecycle -----------------------------------------------------------------------------
    async def ping(self) -> bool:
        """Whether the store answers (readiness)."""
        return True

    async def close(self) -> None:
        """Release connections or files."""
