"""A member's own client keys: named, with an expiry, made and revoked by the member on ``/account``
(signed in, or with a key they already have), for their CLIs. Each is a key like the one an admin
hands out (``srk_…``, shown once, kept as a SHA-256 hash) that signs as that member; it stops working
at its expiry or when revoked, on every worker and replica at once (looked up afresh every request,
never cached)."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from proxy.errors import BadRequest, NotFound
from proxy.state.team import TeamStore, User
from proxy.team.keys import hash_key, new_key

MEMBER_KEY = "member_key"  # record kind: key hash -> {user, name, key_id, created_at, expires_at}
MAX_KEYS = 20
MAX_DAYS = 365
DEFAULT_DAYS = 90
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")


def _check(name: Any, days: Any) -> tuple[str, int]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest("'name' must be 1-40 letters, digits, spaces, '.', '_' or '-' (e.g. \"laptop codex\").",
                         param="name", code="invalid_name")
    if days is None:
        days = DEFAULT_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= MAX_DAYS:
        raise BadRequest(f"'expires_in_days' must be a whole number of days from 1 to {MAX_DAYS}.",
                         param="expires_in_days", code="invalid_expiry")
    return name, days


async def create(store: TeamStore, user: User, name: Any, days: Any) -> tuple[dict[str, Any], str]:
    """A new key for ``user``: its public view and the key itself (the only time it exists here)."""
    name, days = _check(name, days)
    held = await list_keys(store, user.name)
    if len(held) >= MAX_KEYS:
        raise BadRequest(f"You have {MAX_KEYS} keys already; revoke one first.", code="too_many_keys")
    if any(view["name"] == name for view in held):
        raise BadRequest(f"You have a key named {name!r} already.", param="name", code="key_exists")
    key = new_key()
    digest = hash_key(key)
    now = time.time()
    view = {"name": name, "key_id": digest[:12], "created_at": int(now), "expires_at": int(now + days * 86400)}
    await store.put_record(MEMBER_KEY, digest, orjson.dumps({**view, "user": user.name}), user.name,
                           view["expires_at"])
    return view, key


async def list_keys(store: TeamStore, name: str) -> list[dict[str, Any]]:
    views = []
    for _, value in await store.records_of(MEMBER_KEY, name):
        record = orjson.loads(value)
        record.pop("user", None)
        views.append(record)
    return sorted(views, key=lambda view: view["created_at"])


async def revoke(store: TeamStore, name: str, key_id: Any) -> None:
    for digest, _ in await store.records_of(MEMBER_KEY, name):
        if isinstance(key_id, str) and digest[:12] == key_id:
            await store.delete_record(MEMBER_KEY, digest)
            await store.delete_record("seal", f"{name}:{digest}")  # its wrap of a member-sealed login
            return
    raise NotFound(f"You have no key with id {str(key_id)[:20]!r}.", code="key_not_found")


async def user_by_member_key(store: TeamStore, key_hash: str) -> tuple[User, str, float] | None:
    """The user a member key belongs to, the key's id and its expiry, while it is unexpired and unrevoked."""
    found = await store.get_record(MEMBER_KEY, key_hash)
    if found is None:
        return None
    record = orjson.loads(found[0])
    if record.get("expires_at", 0) <= time.time():
        return None
    user = await store.get_user(found[1])
    return (user, record["key_id"], float(record["expires_at"])) if user is not None else None
