"""Device logins started through the account API and not finished yet, by opaque handle.

In memory for one process; in the team store when one is shared (several workers, or replicas on
Redis), so a login started on one replica can be polled on another. Only the caller who started a
login may complete it (its :class:`~proxy.hub.caller.Caller` scope is kept with it), and the device
code is sealed at rest like a login, since it can complete one.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson

from proxy.errors import NotFound, RateLimited
from proxy.login.oauth import DeviceCode
from proxy.state.team import StoreError
from proxy.hub.caller import CALLER
from proxy.team.context import Team
from proxy.team.unavailable import store_unavailable

MAX_PENDING = 8
_CONTEXT = "pending-login"


@dataclass(slots=True)
class PendingLogin:
    device: DeviceCode
    next_poll: float
    owner: str = "anonymous"  # the caller who started it: only they may complete it (Caller.scope_id)


class PendingLogins:
    def __init__(self, shared: Callable[[], Team | None] = lambda: None) -> None:
        self._pending: dict[str, PendingLogin] = {}
        self._shared = shared  # the team store to keep them in, when they must be shared

    async def check_room(self) -> None:
        """A 429 when :data:`MAX_PENDING` logins are in progress: checked before asking the auth server."""
        team = self._shared()
        if team is not None:
            count = await _store(team.store.count_pending())
        else:
            self._expire()
            count = len(self._pending)
        if count >= MAX_PENDING:
            raise RateLimited(f"Too many logins in progress (at most {MAX_PENDING}); finish or wait for one.",
                              code="too_many_pending_logins")

    async def add(self, device: DeviceCode) -> str:
        await self.check_room()
        handle = secrets.token_urlsafe(32)
        await self.save(handle, PendingLogin(device, time.time(), CALLER.get().scope_id))
        return handle

    async def get(self, handle: object) -> PendingLogin:
        pending = None
        if isinstance(handle, str) and 0 < len(handle) <= 128:
            team = self._shared()
            if team is not None:
                found = await _store(team.store.get_pending(handle))
                pending = _open(team, found[0]) if found else None
            else:
                self._expire()
                pending = self._pending.get(handle)
        if pending is None or not hmac.compare_digest(pending.owner, CALLER.get().scope_id):  # nobody else's login
            raise NotFound("No login in progress has that handle (it is unknown, finished or expired).",
                           code="login_not_found")
        return pending

    async def save(self, handle: str, pending: PendingLogin) -> None:
        """Keep ``pending`` (again, after a poll changed its next poll time or interval)."""
        team = self._shared()
        if team is None:
            self._pending[handle] = pending
            return
        record = {"device": asdict(pending.device), "next_poll": pending.next_poll, "owner": pending.owner}
        sealed = team.box.seal(orjson.dumps(record), context=_CONTEXT)
        await _store(team.store.put_pending(handle, sealed, pending.owner, pending.device.expires_at))

    async def drop(self, handle: str) -> None:
        team = self._shared()
        if team is not None:
            await _store(team.store.delete_pending(handle))
        else:
            self._pending.pop(handle, None)

    async def clear(self) -> int:
        """Cancel the caller's logins in progress (logout)."""
        owner = CALLER.get().scope_id
        team = self._shared()
        if team is not None:
            return await _store(team.store.clear_pending(owner))
        mine = [handle for handle, pending in self._pending.items() if pending.owner == owner]
        for handle in mine:
            del self._pending[handle]
        return len(mine)

    def _expire(self) -> None:
        now = time.time()
        for handle in [h for h, p in self._pending.items() if p.device.expires_at < now]:
            del self._pending[handle]


def _open(team: Team, sealed: str) -> PendingLogin:
    record = orjson.loads(team.box.open(sealed, context=_CONTEXT))
    return PendingLogin(DeviceCode(**record["device"]), record["next_poll"], record["owner"])


async def _store(call):
    try:
        return await call
    except StoreError as exc:
        raise store_unavailable(exc) from None
