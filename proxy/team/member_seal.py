"""``[identity] seal = "member"``: a member's ChatGPT login that only that member's own request can open.

The login is sealed twice: inside, under a random *data key* of the member's (AES-256-GCM); outside,
by the server's secret box as every login is (so ``rotate-secret`` still works on it). The data key is
kept only *wrapped*: once per credential of the member that may open it (a client key, a sign-in
session), under a key derived from that credential (HKDF-SHA256 of the key or session token itself).
The server keeps each credential only as its SHA-256 hash, from which the wrapping key cannot be made,
so a dump of the store plus ``SUBRELAY_SECRET_KEY`` opens no member's login. The edge derives the
wrapping key from the credential it was shown (:attr:`proxy.hub.caller.Caller.unlock`); a request
unwraps the data key for itself (:func:`unlock`, one store read) and keeps it in a context variable
for the rest of that request only — a refresh inside the request re-seals under the same data key, so
it still happens once cluster-wide and every credential's wrap stays valid.

What it costs (docs/identity.md says it too): a credential that was not there when the login was
linked cannot open it unless it was made by the member afterwards (a key made on /account while their
login opens); an admin's key rotation, a lost key, or a new sign-in session with no key left means a
new ChatGPT login; an admin cannot link a member's login (``subrelay login --user``); one store read
and an HKDF per request of a member. The quota-aware fallback still works: plan windows are not secret.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.errors import AuthenticationFailed
from proxy.hub.caller import CALLER
from proxy.state.team import OWNER_LOGIN, TeamStore

WRAP = "seal"  # record kind: "<user>:<credential hash>" -> the data key wrapped for that credential
MARK = b"m1"  # an inner (member-sealed) login starts with this
_SALT = b"subrelay member seal v1"
# (user, data key) unwrapped by this request's own credential; never outlives the request's task.
DATA_KEY: ContextVar[tuple[str, bytes] | None] = ContextVar("subrelay_member_data_key", default=None)


def derive(credential: bytes) -> bytes:
    """The wrapping key for one credential (a key or session token): only its holder can make it."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"wrap").derive(credential)


def applies(team, name: str) -> bool:
    return getattr(team, "seal", "server") == "member" and name != OWNER_LOGIN


def _wrap_id(user: str, credential_id: str) -> str:
    return f"{user}:{credential_id}"


async def wrap_for(store: TeamStore, user: str, data_key: bytes, credential_id: str, unlock: bytes,
                   expires_at: float | None = None) -> None:
    """Let the credential ``credential_id`` (its hash) open ``user``'s login too."""
    nonce = os.urandom(12)
    wrapped = nonce + AESGCM(unlock).encrypt(nonce, data_key, user.encode())
    await store.put_record(WRAP, _wrap_id(user, credential_id), wrapped, user, expires_at)


async def forget(store: TeamStore, user: str, credential_id: str) -> None:
    await store.delete_record(WRAP, _wrap_id(user, credential_id))


async def unwrap(store: TeamStore, user: str, credential_id: str, unlock: bytes) -> bytes | None:
    found = await store.get_record(WRAP, _wrap_id(user, credential_id)) if credential_id and unlock else None
    if found is None:
        return None
    raw = found[0]
    try:
        return AESGCM(unlock).decrypt(raw[:12], raw[12:], user.encode())
    except (InvalidTag, ValueError):
        return None


async def unlock(team, name: str, *, create: bool = False) -> bytes | None:
    """This request's data key for ``name``'s login (also kept in :data:`DATA_KEY`), or None when the
    calling credential has none. With ``create`` (a new login being linked by the member), a credential
    without one makes a fresh data key, and the wraps of the old one are dropped (they opened a login
    that is being replaced)."""
    held = DATA_KEY.get()
    if held is not None and held[0] == name:
        return held[1]
    caller = CALLER.get()
    if caller.kind != "user" or caller.name != name or not caller.unlock:
        if create:
            raise AuthenticationFailed("With seal = \"member\", only the member can link their ChatGPT login: they "
                                       "sign in on /account (or use their key) and log in there.",
                                       code="member_seal_needs_member")
        return None
    data_key = await unwrap(team.store, name, caller.credential_id, caller.unlock)
    if data_key is None and create:
        data_key = AESGCM.generate_key(bit_length=256)
        await team.store.delete_records_of(WRAP, name)
        await wrap_for(team.store, name, data_key, caller.credential_id, caller.unlock, caller.credential_expires)
    if data_key is not None:
        DATA_KEY.set((name, data_key))
    return data_key


def seal_inner(name: str, plaintext: bytes) -> bytes:
    """The member layer, with this request's data key (unlocked first)."""
    held = DATA_KEY.get()
    if held is None or held[0] != name:
        raise AuthenticationFailed("This login is sealed for its member and this request cannot open it.",
                                   code="login_sealed")
    nonce = os.urandom(12)
    return MARK + nonce + AESGCM(held[1]).encrypt(nonce, plaintext, name.encode())


def sealed_error(name: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"{name}'s ChatGPT login is sealed so that only their own credentials open it, and "
                                "this key or session is not one of them (made by an admin, rotated, or made while "
                                "the login could not be opened). Log in to ChatGPT again on /account with this key "
                                "or session.", code="login_sealed")


def open_inner(name: str, inner: bytes) -> bytes:
    if not inner.startswith(MARK):
        return inner  # sealed by the server only (seal = "server", or linked before the switch)
    held = DATA_KEY.get()
    if held is None or held[0] != name:
        raise sealed_error(name)
    body = inner[len(MARK):]
    try:
        return AESGCM(held[1]).decrypt(body[:12], body[12:], name.encode())
    except (InvalidTag, ValueError):
        raise AuthenticationFailed(f"{name}'s sealed login could not be opened.", code="login_sealed") from None
