"""Team mode at the edge: whether it is on (the store holds users) and who a presented key belongs to.

Read fresh on every request — one indexed lookup by key hash — so a disabled, removed or rotated key
is refused on its very next request on every worker and replica, with no cache to go stale.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from contextvars import ContextVar
from collections.abc import Mapping

from proxy.observe.redact import get_logger
from proxy.state.team import StoreError
from proxy.state.team import OWNER_LOGIN, StoredLogin, User
from proxy.hub.caller import CALLER, Caller
from proxy.team.fairness import PersonCaps
from proxy.team.context import Team, ledger_options, open_ledger, open_team, store_path
from proxy.team.keys import hash_key, looks_like_user_key
from proxy.team.member_keys import user_by_member_key
from proxy.team.unavailable import store_unavailable

log = get_logger("subrelay.team")
# A login the edge already read for this request (name, login or None), so signing needs no second read.
PREFETCHED_LOGIN: ContextVar[tuple[str, StoredLogin | None] | None] = ContextVar("subrelay_prefetched_login",
                                                                                 default=None)
_LOOK_AGAIN_SECONDS = 1.0
_CACHE_SECONDS = 60.0  # how long a key seen on a network store is trusted *provisionally* (see identify)
_CACHE_SIZE = 10_000
_ADMISSION: list = [None]  # proxy.team.policy.Admission, once imported


class TeamGate:
    def __init__(self, env: Mapping[str, str], *, fallback_at_percent: float = 95.0, workers: int = 1,
                 money=None, ladder: tuple = (), key_caps: dict[str, int] | None = None,
                 queue_seconds: float = 0.0, seal: str = "server") -> None:
        self.env = env
        self.seal = seal  # "member": callers carry the key their credential derives (proxy.team.member_seal)
        self.workers = workers
        self.fallback_at_percent = fallback_at_percent
        self.money = money  # proxy.team.spend.Money: prices, budgets, alerts (None: nothing priced)
        self.ladder = ladder  # proxy.team.ladder.Step, lowest first
        self.rungs: dict[str, int] = {}  # per user, the ladder steps applied to their last request
        self.key_caps = key_caps or {}  # provider name -> streams the members may hold open on it at once
        self.queue_seconds = queue_seconds  # a full cap: wait this long for a slot (0: refuse at once)
        self.team: Team | None = None
        self.book = None  # proxy.team.usage.UsageBook, once the store is open
        self.ledger = None  # proxy.observe.ledger.RequestLedger, once the ledger is on (None: nothing recorded)
        self._ledger_store = None  # the ledger's store when it runs without team mode (SUBRELAY_LEDGER=on)
        self._cache: dict[str, tuple[User, float]] = {}  # key hash -> (user, trusted until)
        # key hash -> (the user record, its caller): the caller is rebuilt only when the store hands out
        # another record (any change to the user, or any write to the store, makes a new one).
        self._callers: dict[str, tuple[User, Caller]] = {}
        self.seen_windows: dict[str, dict[str, int]] = {}  # per login: the plan windows last written (rounded)
        self._next_look = 0.0
        self.caps = PersonCaps.from_env(env)  # each person's share of requests in flight and open sockets

    def open(self) -> Team | None:
        """Open the store if it exists (at start-up, and again when ``subrelay users add`` creates it)."""
        if self.team is None:
            try:
                self.team = open_team(self.env)
            except StoreError as exc:
                log.error("%s", exc)
            if self.team is not None:
                from proxy.team.usage import UsageBook

                self.team.seal = self.seal
                self.team.alerts = self.money.alerts if self.money is not None else None

                if self.workers == 1 and not self.env.get("SUBRELAY_REDIS_URL"):
                    from proxy.state.limits import MemoryLimiter

                    self.team.limiter = MemoryLimiter()  # one process: no disk write to reserve

                self.book = UsageBook(self.team.store, per_user_metrics=self.env.get("SUBRELAY_METRICS_PER_USER") == "1")
                try:
                    self.book.start()
                except RuntimeError:  # no running loop (a command, not the server): flushed on demand
                    pass
                if ledger_options(self.env).requests != "off":
                    self._start_ledger(self.team.ledger)
        return self.team

    def open_ledger(self) -> None:
        """At start-up: the request ledger without team mode, when ``SUBRELAY_LEDGER=on`` says so."""
        if self.ledger is None and self.team is None and ledger_options(self.env).requests == "on":
            try:
                self._ledger_store = open_ledger(self.env)
            except StoreError as exc:
                log.error("%s", exc)
                return
            self._start_ledger(self._ledger_store)

    def _start_ledger(self, store) -> None:
        from proxy.observe.ledger import RequestLedger

        if self.ledger is not None:  # on without team mode first; the team's store is the same file
            return
        options = ledger_options(self.env)
        self.ledger = RequestLedger(store, options.retention, options.audit)
        try:
            self.ledger.start()
        except RuntimeError:  # no running loop (a command): flushed on demand
            pass

    async def close(self) -> None:
        """At shutdown: the last usage figures and ledger entries reach their stores."""
        if self.book is not None:
            await self.book.stop()
        if self.ledger is not None:
            await self.ledger.stop()
        if self._ledger_store is not None:
            await self._ledger_store.close()

    def _team(self, *, now_please: bool = False) -> Team | None:
        if self.team is None and not self.env.get("SUBRELAY_REDIS_URL"):
            now = time.monotonic()
            if now >= self._next_look or now_please:
                self._next_look = now + _LOOK_AGAIN_SECONDS
                if os.path.exists(store_path(self.env)):
                    self.open()
        return self.team

    async def active(self) -> bool:
        """Whether team mode is on: the store holds at least one user (then every request needs a key)."""
        team = self._team()
        if team is None:
            return False
        try:
            if not team.store.remote:
                return await team.store.has_users()
            has_users, owner_login = await team.store.owner_state()  # one round trip for an owner's request
        except StoreError as exc:
            raise store_unavailable(exc) from None
        PREFETCHED_LOGIN.set((OWNER_LOGIN, owner_login))
        return has_users

    async def identify(self, presented: bytes | None, *, may_defer: bool = False) -> tuple[Caller, User] | None:
        """The enabled user whose key was presented, else None.

        With a network store (Redis) and ``may_defer`` (a model request, which always reaches
        :meth:`proxy.team.policy.Admission.admit`), a recently seen key is taken from a short local cache
        and checked there instead, in the same round trip as the limits: the key's user, generation and
        disabled flag are compared atomically, so a revoked or rotated key still fails on its very next
        request. Every other request looks the key up afresh."""
        if not presented or not looks_like_user_key(presented):
            return None
        team = self._team(now_please=True)  # a user's key before the store was noticed: look now
        if team is None:
            return None
        key_hash = hash_key(presented)
        if may_defer and team.store.remote:
            cached = self._cache.get(key_hash)
            if cached is not None and cached[1] > time.monotonic():
                return self._sealing(Caller("user", name=cached[0].name, key_id=cached[0].key_id, since=cached[0].created_at), presented,
                                     key_hash), cached[0]
        try:
            user = await team.store.user_by_key_hash(key_hash)
            if user is None:  # a key the member made themselves (named, expiring): never cached
                found = await user_by_member_key(team.store, key_hash)
                if found is not None and not found[0].disabled:
                    caller = Caller("user", name=found[0].name, key_id=found[1], credential_id=key_hash,
                                    since=found[0].created_at)
                    return self._sealing(caller, presented, key_hash, found[2]), found[0]
        except StoreError as exc:
            raise store_unavailable(exc) from None
        if user is None or user.disabled:
            self._cache.pop(key_hash, None)
            self._callers.pop(key_hash, None)
            return None
        if team.store.remote:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key_hash] = (user, time.monotonic() + _CACHE_SECONDS)
        known = self._callers.get(key_hash)
        if known is not None and known[0] is user:
            caller = known[1]
        else:
            if len(self._callers) >= _CACHE_SIZE:
                self._callers.clear()
            caller = Caller("user", name=user.name, key_id=user.key_id, since=user.created_at)
            self._callers[key_hash] = (user, caller)
        return self._sealing(caller, presented, key_hash), user

    def _sealing(self, caller: Caller, presented: bytes, key_hash: str, expires: float | None = None) -> Caller:
        """With seal = "member", the caller carries what its key derives (and only then: it costs an HKDF)."""
        if self.seal != "member":
            return caller
        from proxy.team.member_seal import derive

        return replace(caller, unlock=derive(presented), credential_id=key_hash, credential_expires=expires)

    def shared_team(self) -> Team | None:
        """The team store when state must be shared beyond this process (several workers, or Redis)."""
        team = self._team()
        if team is None or not (self.workers > 1 or team.store.remote):
            return None
        return team

    async def readmit(self, user: User):
        """A fresh admission for one more response on a team user's open socket: their key is looked
        up again (a key disabled, rotated or removed since the socket opened is refused now)."""
        from proxy.errors import AuthenticationFailed

        caller = CALLER.get()
        try:
            current = await self.team.store.user_by_key_hash(user.key_hash) if self.team is not None else None
            if current is not None and caller.kind == "user" and caller.key_id != user.key_id and caller.credential_id:
                found = await user_by_member_key(self.team.store, caller.credential_id)  # a key the member made
                current = current if found is not None and found[0].name == user.name else None
        except StoreError as exc:
            raise store_unavailable(exc) from None
        if current is None or current.disabled or current.name != user.name:
            raise AuthenticationFailed("This subrelay key is no longer valid (disabled, rotated or removed).",
                                       code="invalid_api_key")
        return self.admission(current)

    def remember(self, user: User) -> None:
        """A user record just read afresh (network stores): the next requests may take it from here."""
        if self.team is not None and self.team.store.remote:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[user.key_hash] = (user, time.monotonic() + _CACHE_SECONDS)

    def forget(self, key_hash: str) -> None:
        """A cached key turned out stale (disabled, rotated, removed): look it up afresh next time."""
        self._cache.pop(key_hash, None)

    def admission(self, user: User):
        """The team policy for one request of ``user`` (limits, allow-list, fallback, accounting)."""
        admission = _ADMISSION[0]
        if admission is None:  # imported on first use: commands that never admit a request skip it
            from proxy.team.policy import Admission

            admission = _ADMISSION[0] = Admission
        return admission(self.team, user, self.book, self.fallback_at_percent, gate=self, money=self.money,
                         ladder=self.ladder)
