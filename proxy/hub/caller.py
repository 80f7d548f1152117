"""Who sent a request, decided once at the edge and read wherever a request's identity matters:
which login signs it, which limits apply, whose usage it is, whose stored responses it may continue.

The edge sets :data:`CALLER` for the request's task (a context variable, so everything the request
runs, streams included, sees the same caller without threading it through every signature).
"""

from __future__ import annotations

import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

CallerKind = Literal["anonymous", "owner", "user"]


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    name: str | None = None  # the user's name (team mode)
    key_id: str = ""  # a short, stable, non-secret id of the key presented

    @property
    def scope_id(self) -> str:
        """What this caller's stored things (responses, usage) are bound to."""
        if self.kind == "user":
            return f"user:{self.name}"
        if self.kind == "owner":
            return f"owner:{self.key_id}"
        return "anonymous"

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
    if caller is not None and caller.kind == "owner" and caller.key_id and caller.key_id != "admin":
        credential = f"owner key {caller.key_id}"
    else:
        credential = "admin key"
    client = scope.get("client")
    who = f"{credential} from {client[0] if client else 'an unknown address'}"
    surface = dict(scope.get("headers") or ()).get(SURFACE_HEADER)
    return who, "page" if surface == b"admin-page" else "api"


def local_identity() -> str:
    """Who runs a ``subrelay`` command: the local account and host (whoever can read the state directory)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid " + str(__import__("os").getuid())
    return f"local user {user} on {socket.gethostname()}"
