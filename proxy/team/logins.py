"""Each person's own ChatGPT login: a request signed for alice uses alice's login and nothing else.

:class:`CallerLogins` is the Codex provider's credential source in team mode. For a user it opens
their login from the store (sealed at rest); for the owner (``SUBRELAY_API_KEYS`` or no keys) it is
the owner's ``auth.json`` as before. A user without a login gets a 401 saying where to log in —
never another person's login, never the owner's file.

Refreshing keeps every guarantee of the single-login path, across workers and replicas: one refresh
per login at a time (an in-process lock plus a store lease with an expiry, so a holder that dies
frees it), losers wait (bounded) and adopt the winner's token, and the winner saves with a
compare-and-set on the login's version so a newer login is never overwritten by an older refresh.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

import proxy.credentials.access_token as access_token
from proxy.credentials.base import Credential
from proxy.credentials.codex import CodexCredentialSource, credential_from_auth, exchange_refresh_token
from proxy.credentials.jwt import jwt_claims
from proxy.errors import AuthenticationFailed, ProxyError, UpstreamTimeout
from proxy.observe.metrics import REFRESHES
from proxy.observe.redact import get_logger, secrets
from proxy.state.team import OWNER_LOGIN, StoredLogin, StoreError, new_login_version
from proxy.hub.caller import CALLER
from proxy.upstream.dispatch import ADMISSION
from proxy.team.context import Team
from proxy.team.gate import PREFETCHED_LOGIN, TeamGate
from proxy.team.unavailable import store_unavailable
from proxy.team import member_seal
from proxy.team.secretbox import SecretKeyError

log = get_logger("subrelay.team.logins")
LEASE_SECONDS = 30.0  # longer than a refresh can take (the token endpoint's timeout)
WAIT_SECONDS = 10.0  # how long a loser waits for the winner's token
SAVE_SECONDS = 15.0  # how long the winner keeps trying to save a rotated login through a store blip
_SKEW = 60.0
_DEAD_CODES = frozenset({"refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated", "invalid_grant"})


def seal_login(team: Team, name: str, auth: dict[str, Any], version: int) -> StoredLogin:
    """A login as the store keeps it: the tokens sealed for ``name``, plus what may be shown."""
    tokens = auth.get("tokens") or {}
    claims = jwt_claims(tokens.get("id_token")) or {}
    credential = credential_from_auth(auth, f"the login of {name}")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    personal = access_token.TokenAccount.from_dict(auth.get(access_token.ACCOUNT_FIELD))  # an access token's whoami
    email = email or (personal.email if personal else None)
    plaintext = orjson.dumps(auth)
    if member_seal.applies(team, name):  # seal = "member": the member's data key inside, the server's box outside
        plaintext = member_seal.seal_inner(name, plaintext)
    return StoredLogin(sealed=team.box.seal(plaintext, context=name), version=version,
                       account_id=credential.account_id, email=email, plan_type=credential.plan_type,
                       updated_at=time.time())


class UserLogin:
    """One user's login in the store, opened on use and refreshed once at a time."""

    def __init__(self, team: Team, name: str, token_url: str, http: httpx.AsyncClient | None, login_hint: str) -> None:
        self.team = team
        self.name = name
        self.token_url = token_url
        self.http = http
        self.login_hint = login_hint
        self.who = "the owner" if name == OWNER_LOGIN else f"user {name!r}"
        self._lock = asyncio.Lock()
        self._opened: tuple[int, str, dict[str, Any], Credential] | None = None  # (version, sealed, auth, credential)

    async def current(self) -> Credential:
        await self._unlock()
        admitted = ADMISSION.get()
        opened = self._opened
        if admitted is not None and admitted.login_known and admitted.user.name == self.name:
            if admitted.login_version is None:  # the store said so in the admitting round trip
                raise AuthenticationFailed(f"No ChatGPT login for {self.who} yet. {self.login_hint}",
                                           code="login_required")
            # Unchanged since we opened it: versions are unique for all time per name (a logout, a removal
            # or a replacement never brings an old version back), and the account must agree too.
            if opened is not None and opened[0] == admitted.login_version and \
                    opened[3].account_id == admitted.account_id:
                credential = opened[3]
                if credential.expires_at is None or credential.expires_at - _SKEW > time.time():
                    return credential
        stored = await self._stored()
        credential, _ = self._open(stored)
        if credential.expires_at is not None and credential.expires_at - _SKEW <= time.time():
            return await self.refresh(stale=credential)
        return credential

    async def refresh(self, *, stale: Credential | None = None) -> Credential:
        await self._unlock()
        async with self._lock:
            stored = await self._stored(fresh=True)
            credential, auth = self._open(stored)
            if stale is not None and credential.access_token != stale.access_token:
                return credential  # someone (another task, worker or replica) refreshed already
            if access_token.is_access_token(credential.access_token):  # nothing renews it: the 401 stands
                raise access_token.refused(self.who, access_token.RENEW_HINT if self.name == OWNER_LOGIN
                                           else access_token.member_hint(self.name))
            lease = f"refresh:{self.name}"
            token = uuid.uuid4().hex
            try:
                try:
                    taken = await self.team.store.acquire_lease(lease, token, LEASE_SECONDS)
                except StoreError:
                    # Not confirmed by a replica (or no answer): refreshing now could spend the refresh token
                    # on a lease a failover forgets, and another replica would spend it again. Free what the
                    # primary may hold and refuse, bounded; the next request tries again.
                    await self._release_quietly(lease, token)
                    raise
                if not taken:
                    return await self._adopt(stored.version)
                try:
                    return await self._refresh_and_save(stored, auth, lease, token)
                finally:
                    await self.team.store.release_lease(lease, token)
            except StoreError as exc:
                raise store_unavailable(exc) from None

    async def _unlock(self) -> None:
        """seal = "member": this request's own credential must open the login, or nothing does (not even
        what this process opened for an earlier request of theirs)."""
        if member_seal.applies(self.team, self.name) and await member_seal.unlock(self.team, self.name) is None:
            await self._stored(fresh=True)  # no login at all: say that (login_required) rather than "sealed"
            raise member_seal.sealed_error(self.name)

    async def _release_quietly(self, lease: str, token: str) -> None:
        try:
            await self.team.store.release_lease(lease, token)
        except StoreError:
            pass  # it expires on its own (LEASE_SECONDS)

    async def _adopt(self, seen_version: int) -> Credential:
        """Another holder is refreshing: wait for its save and use its token."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            stored = await self._stored(fresh=True)
            if stored.version != seen_version:
                return self._open(stored)[0]
        raise UpstreamTimeout(f"Timed out waiting for another replica to refresh {self.name}'s ChatGPT login.",
                              code="refresh_lock_timeout")

    async def _refresh_and_save(self, stored: StoredLogin, auth: dict[str, Any], lease: str = "",
                                token: str = "") -> Credential:
        refresh_token = (auth.get("tokens") or {}).get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise AuthenticationFailed(f"{self.name}'s ChatGPT login has expired and has no refresh token. "
                                       f"{self.login_hint}", code="token_expired")
        try:
            fresh = await exchange_refresh_token(self.http, self.token_url, refresh_token, self.login_hint)
        except AuthenticationFailed as exc:
            if exc.code in _DEAD_CODES or exc.code == "refresh_failed":
                await self._mark_dead(stored, exc.code or "refresh_failed")
            raise
        updated = dict(auth)
        tokens = dict(updated.get("tokens") or {})
        tokens["access_token"] = fresh["access_token"]
        for field in ("id_token", "refresh_token"):
            if isinstance(fresh.get(field), str) and fresh[field]:
                tokens[field] = fresh[field]
        updated["tokens"] = tokens
        updated["last_refresh"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        saved = seal_login(self.team, self.name, updated, stored.version + 1)
        if not await self._save_rotated(saved, stored.version, lease, token):
            log.warning("%s's login changed during a refresh; keeping the newer one", self.name)
            return self._open(await self._stored(fresh=True))[0]
        REFRESHES.labels("ok").inc()
        log.info("refreshed the ChatGPT login of %s", self.name)
        return self._open(saved)[0]

    async def _save_rotated(self, saved: StoredLogin, seen_version: int, lease: str, token: str) -> bool:
        """Save a rotated login, riding out a store blip while still holding the lease: the old refresh
        token is spent, so giving up (and letting another replica refresh with it) would log this person
        out. Retries for up to :data:`SAVE_SECONDS`, renewing the lease between tries."""
        deadline = time.monotonic() + SAVE_SECONDS
        pause = 0.1
        while True:
            try:
                return await self.team.store.put_login(self.name, saved, expected_version=seen_version)
            except StoreError as exc:
                if time.monotonic() + pause > deadline:
                    log.error("refreshed the ChatGPT login of %s but could not save it (%s)", self.who, exc)
                    raise
                log.warning("saving the refreshed login of %s failed (%s); trying again", self.who, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
            if lease:
                try:
                    await self.team.store.acquire_lease(lease, token, LEASE_SECONDS)  # still ours: renewed
                except StoreError:
                    pass

    async def _mark_dead(self, stored: StoredLogin, code: str) -> None:
        marked = StoredLogin(stored.sealed, stored.version + 1, stored.account_id, stored.email, stored.plan_type,
                             needs_login=code, updated_at=time.time())
        await self.team.store.put_login(self.name, marked, expected_version=stored.version)
        if getattr(self.team, "alerts", None) is not None:
            self.team.alerts.send("login.needs_login", {"user": self.name, "reason": code})

    async def _stored(self, *, fresh: bool = False) -> StoredLogin:
        prefetched = None if fresh else PREFETCHED_LOGIN.get()
        if prefetched is not None and prefetched[0] == self.name:
            stored = prefetched[1]  # read by the edge in this request's one round trip
        else:
            try:
                stored = await self.team.store.get_login(self.name)
            except StoreError as exc:
                raise store_unavailable(exc) from None
        if stored is None:
            raise AuthenticationFailed(f"No ChatGPT login for {self.who} yet. {self.login_hint}",
                                       code="login_required")
        if stored.needs_login:
            raise AuthenticationFailed(f"The ChatGPT login of {self.who} must be renewed ({stored.needs_login}: it "
                                       f"expired or was used elsewhere). {self.login_hint}", code="login_required")
        return stored

    def _open(self, stored: StoredLogin) -> tuple[Credential, dict[str, Any]]:
        opened = self._opened
        if opened is None or opened[0] != stored.version or opened[1] != stored.sealed:
            try:
                auth = orjson.loads(member_seal.open_inner(self.name, self.team.box.open(stored.sealed,
                                                                                         context=self.name)))
            except (SecretKeyError, orjson.JSONDecodeError) as exc:
                raise AuthenticationFailed(f"The stored login of {self.who} cannot be opened: {exc} {self.login_hint}",
                                           code="login_unreadable") from None
            tokens = auth.get("tokens") or {}
            secrets.add(tokens.get("access_token"), tokens.get("refresh_token"), tokens.get("id_token"))
            credential = credential_from_auth(auth, f"the login of {self.who}", self.login_hint)
            opened = self._opened = (stored.version, stored.sealed, auth, credential)
        return opened[3], opened[2]


class CallerLogins:
    """The Codex provider's credential source in team mode: the caller's own login, or the owner's file."""

    name = "codex"
    can_refresh = True

    def __init__(self, owner: CodexCredentialSource, gate: TeamGate, token_url: str, login_hint: str) -> None:
        self.owner = owner
        self.gate = gate
        self.token_url = token_url
        self.login_hint = login_hint
        self._users: dict[str, UserLogin] = {}

    @property
    def http(self) -> httpx.AsyncClient | None:
        return self.owner.http

    @http.setter
    def http(self, client: httpx.AsyncClient | None) -> None:
        self.owner.http = client

    def problem(self) -> str | None:
        caller = CALLER.get()
        if caller.kind == "user" or self._owner_in_store():
            return None  # whether there is a login is answered (401 with the way to log in) when signing
        return self.owner.problem()

    def _owner_in_store(self) -> bool:
        """With a network store (Redis), the owner's login lives there too: replicas share nothing else."""
        team = self.gate.team
        return team is not None and team.store.remote

    def user_login(self, name: str) -> UserLogin:
        login = self._users.get(name)
        if login is None or login.team is not self.gate.team:
            if len(self._users) > 10_000:
                self._users.clear()
            login = self._users[name] = UserLogin(self.gate.team, name, self.token_url, self.owner.http,
                                                  self.login_hint)
        login.http = self.owner.http
        return login

    def _source(self):
        caller = CALLER.get()
        if caller.kind != "user":
            return self.user_login(OWNER_LOGIN) if self._owner_in_store() else self.owner
        if self.gate.team is None:
            raise ProxyError("Team mode is on but its store is not open.", code="state_store_unavailable",
                             status_code=503)
        return self.user_login(caller.name)

    async def current(self) -> Credential:
        return await self._source().current()

    async def refresh(self, *, stale: Credential | None = None) -> Credential:
        return await self._source().refresh(stale=stale)

    def load(self) -> Credential:
        return self.owner.load()

    def signed_account(self, name: str) -> str | None:
        """The account of ``name``'s login as last opened here (it has just signed their request)."""
        login = self._users.get(name)
        opened = login._opened if login is not None else None
        return opened[3].account_id if opened is not None else None


async def import_owner_login(team: Team, owner: CodexCredentialSource) -> None:
    """With Redis, the owner's ``auth.json`` is copied into the store on first start (said in the log),
    so every replica signs the owner's requests with one login and one refresh at a time."""
    if not team.store.remote:
        return
    try:
        if await team.store.get_login(OWNER_LOGIN) is not None:
            return
        auth = owner._read()
        if access_token.is_access_token(owner.load().access_token):  # (load raises when there is nothing to import)
            signed = await owner.current()  # whoami: the store's copy carries the account, as members' do
            auth = access_token.auth_json(signed.access_token, owner.token_accounts.get(signed.access_token))
    except (ProxyError, StoreError):
        return
    saved = seal_login(team, OWNER_LOGIN, auth, new_login_version())
    try:
        if await team.store.put_login(OWNER_LOGIN, saved, expected_version=None):
            log.info("imported the owner's ChatGPT login from %s into the shared store (Redis); replicas use it "
                     "from there, and refreshes are saved there", owner.path)
    except StoreError as exc:
        log.warning("could not import the owner's ChatGPT login into the shared store: %s", exc)
