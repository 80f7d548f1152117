"""A member's own keys on ``/api/account/keys``: list, create (named, with an expiry; the key is in the
answer that made it and nowhere else), revoke. Only the calling member's keys, whoever asks: a member
signed in on ``/account`` or presenting one of their keys; an admin acting as nobody gets a 403."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import PermissionDenied, ServiceUnavailable
from proxy.hub.caller import CALLER
from proxy.hub.json_response import json_response
from proxy.state.team import StoreError
from proxy.team import audit, member_keys, member_seal
from proxy.team.keys import hash_key
from proxy.team.admin_api import json_body
from proxy.team.unavailable import store_unavailable

PREFIX = "/api/account/keys"


async def _member(request: Request):
    caller = CALLER.get()
    if caller.kind != "user":
        raise PermissionDenied("Keys here belong to a team member: sign in on /account as one (or use your key).",
                               code="member_required")
    team = request.app.state.subrelay.team
    if team is None:
        raise ServiceUnavailable("Team mode's store is not open.", code="state_store_unavailable")
    user = await team.store.get_user(caller.name)
    if user is None or user.disabled:
        raise PermissionDenied("Your subrelay user is disabled or was removed.", code="member_disabled")
    return team.store, user


async def list_keys(request: Request) -> Response:
    try:
        store, user = await _member(request)
        return json_response({"object": "list", "data": await member_keys.list_keys(store, user.name)})
    except StoreError as exc:
        raise store_unavailable(exc) from None


async def create_key(request: Request) -> Response:
    body = await json_body(request)
    try:
        store, user = await _member(request)
        view, key = await member_keys.create(store, user, body.get("name"), body.get("expires_in_days"))
        view["opens_login"] = await _let_open_login(request.app.state.subrelay.team, user.name, key, view)
    except StoreError as exc:
        raise store_unavailable(exc) from None
    await audit.record_request(request.app.state.subrelay.team, request.scope, "member_key.create", user.name,
                               f"key id {view['key_id']} named {view['name']!r}", own=True)
    return json_response({**view, "key": key}, status_code=201, headers={"cache-control": "no-store"})


async def _let_open_login(team, name: str, key: str, view: dict) -> bool | None:
    """seal = "member": wrap the member's data key for the new key too, when this request can open it
    (None when logins are sealed by the server, where any of the member's keys opens theirs)."""
    if not member_seal.applies(team, name):
        return None
    data_key = await member_seal.unlock(team, name)
    if data_key is None:
        return False
    await member_seal.wrap_for(team.store, name, data_key, hash_key(key), member_seal.derive(key.encode()),
                               view["expires_at"])
    return True


async def revoke_key(request: Request) -> Response:
    try:
        store, user = await _member(request)
        await member_keys.revoke(store, user.name, request.path_params["key_id"])
    except StoreError as exc:
        raise store_unavailable(exc) from None
    await audit.record_request(request.app.state.subrelay.team, request.scope, "member_key.revoke", user.name,
                               f"key id {request.path_params['key_id']}", own=True)
    return json_response({"object": "key.deleted", "key_id": request.path_params["key_id"], "deleted": True})


def routes() -> list[Route]:
    return [Route(PREFIX, list_keys, methods=["GET"]), Route(PREFIX, create_key, methods=["POST"]),
            Route(f"{PREFIX}/{{key_id}}", revoke_key, methods=["DELETE"])]
