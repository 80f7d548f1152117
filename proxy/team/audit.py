"""Admin actions and who made them: the one place every admin surface reports an action to, and the
hook the audit log (issue 29's append-only, hash-chained log) attaches its writer to.

Who made it comes from the edge, never from the request again: :attr:`proxy.hub.caller.Caller.actor`
is "admin key", the SSO subject ("sso:<sub> <email>"), or the trusted header's person
("header:<person>"); the command line names the local account. Until a sink is attached, each action is
one log line. A sink that fails is logged and does not undo the action (the action already happened).
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.hub.caller import CALLER
from proxy.observe.redact import get_logger

log = get_logger("subrelay.audit")


@dataclass(frozen=True, slots=True)
class AdminAction:
    actor: str  # who (never a secret)
    action: str  # e.g. "user.create", "user.change", "user.remove", "user.rotate_key", "member_key.create"
    target: str  # what it was done to (a user name, a key id)
    surface: str  # "api" (the admin API and page), "account" (a member on /account), "cli"
    at: float = field(default_factory=time.time)
    detail: dict[str, Any] = field(default_factory=dict)  # what changed (field names and values, never a key)


Sink = Callable[[AdminAction], Awaitable[None]]
_SINKS: list[Sink] = []


def attach(sink: Sink) -> None:
    """Send every admin action to ``sink`` too (the audit log's writer)."""
    _SINKS.append(sink)


def detach(sink: Sink) -> None:
    if sink in _SINKS:
        _SINKS.remove(sink)


def command_line_actor() -> str:
    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):
        return "command line"


async def record(action: str, target: str, *, surface: str = "api", detail: dict[str, Any] | None = None,
                 actor: str | None = None) -> AdminAction:
    entry = AdminAction(actor or CALLER.get().actor, action, target, surface, detail=dict(detail or {}))
    log.info("admin action %s on %s by %s (%s)", entry.action, entry.target, entry.actor, entry.surface)
    for sink in list(_SINKS):
        try:
            await sink(entry)
        except Exception:  # the action is done; losing its record is logged loudly, not turned into an error
            log.exception("an audit sink failed to record %s on %s", entry.action, entry.target)
    return entry
