"""Copy one team store into another (``subrelay migrate-state --to redis://…``): going from one host's
SQLite file to Redis when a team starts running several replicas.

Users (with their key hashes: every key keeps working), sealed logins (re-sealed on the way under the
key the replicas get, when the caller passes ``reseal``), usage and plan windows are copied. Reservations
and leases are not: they last seconds to a minute and mean nothing to another store. The target must hold no users yet, so running
the copy twice cannot double anyone's usage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.state.team import StoredLogin, StoreError, TeamStore


class TargetNotEmpty(StoreError):
    """The target store has users already."""


@dataclass
class Copied:
    users: int = 0
    logins: int = 0
    usage_rows: int = 0
    plan_windows: int = 0
    login_key_ids: set[str] = field(default_factory=set)  # which secret keys sealed the copied logins


async def copy_store(source: TeamStore, target: TeamStore, plan_windows: dict[str, dict],
                     reseal: Callable[[str, StoredLogin], StoredLogin] | None = None) -> Copied:
    """Copy ``source`` into the empty ``target``; ``plan_windows`` are the source's (by login key), as the
    interface has no listing of them. ``reseal`` (user name, login) gives the login as the target keeps it:
    sealed under the key the replicas will have (the caller knows the keys; this layer does not)."""
    if await target.has_users():
        raise TargetNotEmpty("The target store has users already; migrate-state copies into an empty store only.")
    copied = Copied()
    for user in await source.list_users():
        await target.add_user(user)
        copied.users += 1
        login = await source.get_login(user.name)
        if login is not None and reseal is not None:
            login = reseal(user.name, login)
        if login is not None and await target.put_login(user.name, login, expected_version=None):
            copied.logins += 1
            copied.login_key_ids.add(login.sealed.split(".", 2)[1] if login.sealed.count(".") >= 2 else "?")
    rows = await source.usage()
    for start in range(0, len(rows), 500):
        await target.add_usage(rows[start:start + 500])
    copied.usage_rows = len(rows)
    for login_key, windows in plan_windows.items():
        await target.put_plan_windows(login_key, windows)
        copied.plan_windows += 1
    return copied
