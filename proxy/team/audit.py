"""The audit log of admin actions: who (which credential, from where), through which surface (the admin API,
the admin page or a command), what, to whom, and when — appended to the ledger store's ``audit`` log, in
its own hash chain. Nothing edits or removes an entry (retention aside: ``SUBRELAY_AUDIT_DAYS``).

An action is written when it has succeeded, in the same call: an audit write that fails is logged as an
error and the action still stands (it happened; refusing the answer would only hide that).

Who made it comes from the edge, never from the request again (:func:`proxy.hub.caller.admin_identity`):
"admin key", "owner key <id>", the SSO subject ("sso:<sub> <email>"), the trusted header's person
("header:<person>"), each with the address it came from; a member's own change names their sign-in or key.
"""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

from proxy.hub.caller import admin_identity, member_identity
from proxy.observe.ledger import iso_time
from proxy.observe.redact import get_logger
from proxy.state.team import User

log = get_logger("subrelay.audit")
# Fields an audit entry never shows (secrets, or bookkeeping a change always moves).
_HIDDEN = frozenset({"key_hash", "key_id", "generation", "created_at", "name"})


def _shown() -> list[str]:
    """Every user field but the hidden ones: limits and budgets added later are audited without a change here."""
    return [f.name for f in fields(User) if f.name not in _HIDDEN]


async def record_action(ledger: Any, actor: str, via: str, action: str, target: str | None, details: str = "") -> None:
    """Append one admin action to the audit log of ``ledger`` (a :class:`proxy.state.ledger.LedgerStore`)."""
    now = time.time()
    entry = {"time": iso_time(now), "actor": actor, "via": via, "action": action, "target": target,
             "details": details or None}
    try:
        await ledger.append("audit", [entry], [now])
    except Exception as exc:  # noqa: BLE001 - the action stands; the operator must see the gap
        log.error("could not write the audit entry %s %s by %s (%s)", action, target, actor, exc)


async def record_request(team: Any, scope: Any, action: str, target: str | None, details: str = "", *,
                         own: bool = False) -> None:
    """The audit entry for a change an HTTP request made: who from the edge's caller (an admin, or with
    ``own`` a member changing their own things), into ``team``'s ledger. No team (no store): nothing."""
    if team is None:
        return
    who, via = member_identity(scope) if own else admin_identity(scope)
    await record_action(team.ledger, who, via, action, target, details)


def change_details(before: User, after: User) -> str:
    """What a change did, field by field (``rpm: 60 -> 120; disabled: false -> true``); never a key or hash."""
    parts = []
    for name in _shown():
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            parts.append(f"{name}: {_text(old)} -> {_text(new)}")
    return "; ".join(parts)


def user_details(user: User) -> str:
    """A new user's settings (key id, limits), for ``user.add``."""
    shown = [f"key id {user.key_id}"] + [f"{name}: {_text(getattr(user, name))}" for name in _shown()
                                         if getattr(user, name) not in (None, (), {}, False)]
    return "; ".join(shown)


def change_action(before: User, after: User) -> str:
    """``user.disable`` / ``user.enable`` when that is all that changed; ``user.change`` otherwise (limits,
    budgets, models…)."""
    if before.disabled != after.disabled and change_details(before, after).count(";") == 0:
        return "user.disable" if after.disabled else "user.enable"
    return "user.change"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value) or "all"
    if isinstance(value, dict):
        return ",".join(f"{k}({','.join(f'{f}={n}' for f, n in v.items())})" if isinstance(v, dict)
                        else f"{k}=${v}" for k, v in value.items()) or "none"  # model limits, or budgets
    return str(value)
