"""Who sent a request, decided once at the edge and read wherever a request's identity matters:
which login signs it, which limits apply, whose usage it is, whose stored responses it may continue.

The edge sets :data:`CALLER` for the request's task (a context variable, so everything the request
runs, streams included, sees the same caller without threading it through every signature).
However the caller proved who they are — the admin key, an owner key, a member's key, a sign-in session
(OpenID Connect) or a trusted proxy's header — the edge decides it once and records it here:
``admin`` says the caller may use the admin surfaces, and :attr:`Caller.actor` is the identity an
audit record names ("admin key", the SSO subject, the header's person). Nothing below the edge reads a
credential again.
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

CallerKind = Literal["anonymous", "owner", "user"]


def person_key(name: str, created_at: float) -> str:
    """What one person's counters, usage and stored conversations are bound to: the user's name and
    when that user was made, so a name removed and added again is a new person who inherits nothing
    (no usage, no limit or budget counters, no conversation). A user made before person keys (no
    creation time) keeps the bare name. Remembered (bounded): a request asks several times."""
    if not created_at:
        return name
    known = _PERSONS.get((name, created_at))
    if known is None:
        if len(_PERSONS) >= 10_000:
            _PERSONS.clear()
        known = _PERSONS[(name, created_at)] = f"{name}~{int(created_at * 1000):x}"
    return known


_PERSONS: dict[tuple[str, float], str] = {}


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    name: str | None = None  # the user's name (team mode)
    key_id: str = ""  # a short, stable, non-secret id of the key presented
    since: float = 0.0  # when the user was made (team mode): tells this person from an earlier one of the name
    admin: bool = False  # may use the admin API and page (the admin key, or a signed-in admin)
    identity: str = ""  # who signed in: "sso:<subject> <email>", "header:<person>"; empty for keys
    via: str = "key"  # how the caller was identified: "key", "session" (sign-in cookie) or "header"
    # seal = "member" only: the key derived from the credential presented (it opens what was sealed for
    # it, proxy.team.member_seal), that credential's hash, and when it expires. Never logged or shown.
    unlock: bytes = field(default=b"", repr=False, compare=False)
    credential_id: str = field(default="", repr=False, compare=False)
    credential_expires: float | None = field(default=None, repr=False, compare=False)

    @property
    def scope_id(self) -> str:
        """What this caller's stored things (responses, sockets, device logins) are bound to: the person,
        never only the name."""
        if self.kind == "user":
            return f"user:{person_key(self.name or '', self.since)}"
        if self.kind == "owner":
            return f"owner:{self.key_id}"
        return "anonymous"

    @property
    def actor(self) -> str:
        """Who made an action, as an audit record names it (never a secret)."""
        if self.identity:
            return self.identity
        if self.kind == "owner" and self.key_id and self.key_id != "admin":
            return f"owner key {self.key_id}"
        if self.kind == "user":
            return f"user {self.name} (key {self.key_id})"
        return "admin key"  # the admin key itself, or no key at all (a local server without keys)

    @property
    def person(self) -> str:
        """Who a request's log line and ledger entry name: the user's name, or the owner key's id (never
        the key), or ``anonymous`` when no keys are set."""
        if self.kind == "user" and self.name:
            return self.name
        if self.kind == "owner":
            return f"owner:{self.key_id}" if self.key_id else "owner"
        return "anonymous"

    @property
    def label(self) -> str:
        """How logs and metrics name the caller (never the key)."""
        return self.name if self.kind == "user" and self.name else self.kind


ANONYMOUS = Caller("anonymous")
ADMIN_KEY = Caller("owner", key_id="admin", admin=True)
CALLER: ContextVar[Caller] = ContextVar("subrelay_caller", default=ANONYMOUS)


def key_id(key: bytes) -> str:
    """A short non-secret id for a key: enough to tell keys apart in a listing or a binding."""
    return hashlib.sha256(key).hexdigest()[:12]


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The client key from ``Authorization: Bearer`` or ``x-api-key`` (as the OpenAI and Anthropic SDKs send it)."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip()
    api_key = headers.get(b"x-api-key")
    return api_key.strip() or None if api_key else None


class OwnerKeys:
    """The keys in ``SUBRELAY_API_KEYS``: each is an owner (no user record), compared in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [(key.encode(), key_id(key.encode())) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: bytes | None) -> Caller | None:
        if not presented:
            return None
        found = None
        for key, kid in self._keys:  # every key compared, so timing does not tell which one matched
            if hmac.compare_digest(presented, key):
                found = kid
        return Caller("owner", key_id=found) if found is not None else None


# -- who made an admin change (the audit log) -----------------------------------------------------------

# The admin page says so on its calls, so the audit log can tell the page from a script using the API.
SURFACE_HEADER = b"x-subrelay-surface"


def admin_identity(scope) -> tuple[str, str]:
    """(who, via) of an admin request, as the audit log names them: the credential and where it came from
    (``admin key from 10.0.0.7``), and the surface (``page`` or ``api``). The one place the edge's naming of
    an admin lives: SSO sessions and trusted headers extend this function, nothing else."""
    caller = scope.get("subrelay.caller")
    # "admin key", "owner key <id>", "sso:<subject> <email>" or "header:<person>". A member's key beside the
    # admin key (the admin check passed on the admin key): the admin key made the change.
    admin_key = caller is None or (caller.kind == "user" and not caller.identity)
    credential = "admin key" if admin_key else caller.actor
    client = scope.get("client")
    who = f"{credential} from {client[0] if client else 'an unknown address'}"
    surface = dict(scope.get("headers") or ()).get(SURFACE_HEADER)
    return who, "page" if surface == b"admin-page" else "api"


def member_identity(scope) -> tuple[str, str]:
    """(who, via) of a member's change to their own things (their keys on ``/account``): their sign-in
    identity or their key, and where it came from."""
    caller = scope.get("subrelay.caller")
    client = scope.get("client")
    return (f"{caller.actor if caller is not None else 'anonymous'} from "
            f"{client[0] if client else 'an unknown address'}", "account")


def local_identity() -> str:
    """Who runs a ``subrelay`` command: the local account and host (whoever can read the state directory)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid " + str(__import__("os").getuid())
    return f"local user {user} on {socket.gethostname()}"
