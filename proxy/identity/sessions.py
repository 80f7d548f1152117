"""Sign-in sessions: a random cookie value the server keeps only as a hash, in the team store (so every
worker and replica sees a sign-out or a revocation at once), with an expiry and a CSRF token.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (another site's page cannot send it
with a POST or a fetch; Lax rather than Strict because the sign-in comes back from the provider as a
top-level navigation), ``Secure`` and ``__Host-`` prefixed whenever the request came over TLS, and
``Path=/``. A state-changing request made with the cookie must also carry ``x-csrf-token`` equal to the
session's token (the page reads it from ``GET /auth/session``): the edge checks it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass

import orjson

from proxy.state.team import TeamStore

SESSION = "session"  # record kind
COOKIE = "subrelay_session"
TLS_COOKIE = "__Host-subrelay_session"


@dataclass(frozen=True, slots=True)
class Session:
    identity: str  # how audit records name the person
    admin: bool
    user: str | None  # the team user they are, when they are one
    csrf: str
    expires_at: float
    created_at: float

    @property
    def owner(self) -> str:
        """Whose sessions these are (for 'sign out everywhere' and a removed user)."""
        return f"user:{self.user}" if self.user else f"admin:{self.identity}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(store: TeamStore, *, identity: str, admin: bool, user: str | None, hours: float) -> tuple[str, Session]:
    """A new session; the token goes into the cookie and nowhere else."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    session = Session(identity, admin, user, secrets.token_urlsafe(24), now + hours * 3600, now)
    await store.put_record(SESSION, token_hash(token), orjson.dumps(asdict(session)), session.owner,
                           session.expires_at)
    return token, session


async def find(store: TeamStore, token: str) -> Session | None:
    found = await store.get_record(SESSION, token_hash(token))
    if found is None:
        return None
    session = Session(**orjson.loads(found[0]))
    return session if session.expires_at > time.time() else None


async def end(store: TeamStore, token: str) -> None:
    await store.delete_record(SESSION, token_hash(token))


async def end_all_of_user(store: TeamStore, user: str) -> int:
    """Sign a user out everywhere (an admin revoking them, the user removed)."""
    return await store.delete_records_of(SESSION, f"user:{user}")


def cookie_name(tls: bool) -> str:
    return TLS_COOKIE if tls else COOKIE


def set_cookie(token: str, tls: bool, max_age: int) -> str:
    """The ``Set-Cookie`` value for a session (an empty token and 0 clear it)."""
    return (f"{cookie_name(tls)}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
            + ("; Secure" if tls else ""))


def token_from(cookie_header: bytes | None) -> str | None:
    """The session token from a ``Cookie`` header (either name), else None."""
    if not cookie_header:
        return None
    for part in cookie_header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name in (COOKIE, TLS_COOKIE) and value and len(value) <= 128:
            return value
    return None
