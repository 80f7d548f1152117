"""The admin API (``/api/admin/…``): people, their keys and limits, and usage, behind SUBRELAY_ADMIN_KEY.

The same rules as ``subrelay users`` (:mod:`proxy.team.users`), so both refuse the same input the same
way. Answers never hold a token or a key hash; a new key appears once, in the answer that made it.
Without SUBRELAY_ADMIN_KEY the API is off (403 ``admin_key_required``), on loopback too: whoever can
reach the port must not be able to mint keys. The edge has already refused cross-site browsers.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import (
    AuthenticationFailed,
    BadRequest,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from proxy.hub.caller import CALLER
from proxy.hub.checks import decode_json_object
from proxy.hub.json_response import json_response
from proxy.state.team import StoreError
from proxy.team import audit, users
from proxy.team.context import Team, open_team
from proxy.team.secretbox import SecretKeyError
from proxy.team.usage_report import usage_report
from proxy.team.audit import change_action, change_details, user_details
from proxy.team.views import user_view

PREFIX = "/api/admin"
MAX_BODY_BYTES = 64 * 1024  # an admin request is a few fields; anything bigger is a mistake or an attack
_NEW_USER_FIELDS = ("name", "models", "rpm", "tpm", "daily_tokens", "fallback", "model_limits", "budgets", "max_effort",
                    "max_concurrent")

Handler = Callable[[Request], Awaitable[Response]]


def check_admin_key(request: Request) -> None:
    """The admin key in ``x-admin-key`` or ``Authorization: Bearer``, compared in constant time; or a
    caller the edge already named an admin (signed in through SSO, or by the trusted proxy's header)."""
    if CALLER.get().admin and CALLER.get().via != "key":
        return
    key = request.app.state.subrelay.settings.admin_key
    if not key:
        raise PermissionDenied("The admin API is off until SUBRELAY_ADMIN_KEY is set (a long random value; "
                               "send it in 'x-admin-key' or 'Authorization: Bearer').", code="admin_key_required")
    expected = key.encode()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    candidates = [request.headers.get("x-admin-key", ""), token.strip() if scheme.lower() == "bearer" else ""]
    matched = False
    for candidate in candidates:  # both compared, so timing tells nothing about which header held it
        if candidate and hmac.compare_digest(candidate.encode("latin-1", "replace"), expected):
            matched = True
    if not matched:
        raise AuthenticationFailed("This needs the admin key (SUBRELAY_ADMIN_KEY) in 'x-admin-key' or "
                                   "'Authorization: Bearer'.", code="invalid_admin_key")


def admin(handler: Handler) -> Handler:
    """An admin endpoint: the key checked first; a store that cannot answer is a 503, not a 500."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        check_admin_key(request)
        try:
            return await handler(request)
        except StoreError as exc:
            raise ServiceUnavailable(f"subrelay's team store is not answering ({exc}); try again shortly.",
                                     code="state_store_unavailable") from None
        except SecretKeyError as exc:
            raise ServiceUnavailable(str(exc), code="secret_key_unusable") from None

    return guarded


async def team_of(request: Request, *, create: bool = False) -> Team | None:
    """The running server's team handles (``app.state.subrelay.team``, opened once a store exists); with
    ``create``, the store is made first (the first user added through the API starts team mode)."""
    state = request.app.state.subrelay
    team = getattr(state, "team", None) or getattr(request.app.state, "admin_team", None)
    if team is None and create:
        made = open_team(state.settings.env, create=True)
        team = getattr(state, "team", None)  # the server's own handles now find the store
        if team is None:  # an app without team wiring: keep these
            request.app.state.admin_team = team = made
        elif made is not None:
            await made.store.close()
    return team


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object: at most :data:`MAX_BODY_BYTES`, ``application/json``, else a 4xx."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Send the request body as JSON with 'Content-Type: application/json'.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"An admin request body is at most {MAX_BODY_BYTES} bytes.")
    return decode_json_object(bytes(body))


def _name(request: Request) -> str:
    return request.path_params["name"]


# -- users ---------------------------------------------------------------------------------------------


@admin
async def list_users(request: Request) -> Response:
    team = await team_of(request)
    views = [await user_view(team.store, user) for user in await team.store.list_users()] if team else []
    return json_response({"object": "list", "data": views})


@admin
async def create_user(request: Request) -> Response:
    body = await json_body(request)
    unknown = sorted(set(body) - set(_NEW_USER_FIELDS))
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0]!r}; fields: {', '.join(_NEW_USER_FIELDS)}.", param=unknown[0],
                         code="unknown_parameter")
    users.check_name(body.get("name"))  # a bad name refused before a store is created for it
    team = await team_of(request, create=True)
    assert team is not None
    user, key = await users.add_user(team.store, body.get("name"), models=body.get("models"), rpm=body.get("rpm"),
                                     tpm=body.get("tpm"), daily_tokens=body.get("daily_tokens"),
                                     fallback=body.get("fallback", False), model_limits=body.get("model_limits"),
                                     budgets=body.get("budgets"), max_effort=body.get("max_effort"),
                                     max_concurrent=body.get("max_concurrent"))
    await _audit(request, "user.add", user.name, user_details(user))
    return json_response({**await user_view(team.store, user), "key": key}, status_code=201)


@admin
async def get_user(request: Request) -> Response:
    store = await _store(request)
    return json_response(await user_view(store, await users.get_user(store, _name(request))))


@admin
async def change_user(request: Request) -> Response:
    body = await json_body(request)
    store = await _store(request)
    before = await users.get_user(store, _name(request))
    user = await users.change_user(store, _name(request), body) if body else before
    if body and change_details(before, user):
        await _audit(request, change_action(before, user), user.name, change_details(before, user))
    return json_response(await user_view(store, user))


@admin
async def remove_user(request: Request) -> Response:
    await users.remove_user(await _store(request), _name(request))
    await _audit(request, "user.remove", _name(request), "their key and their ChatGPT login removed")
    return json_response({"object": "user.deleted", "name": _name(request), "deleted": True})


@admin
async def rotate_key(request: Request) -> Response:
    store = await _store(request)
    old = (await users.get_user(store, _name(request))).key_id
    user, key = await users.rotate_key(store, _name(request))
    await _audit(request, "user.rotate_key", user.name, f"new key id {user.key_id} (was {old})")
    return json_response({**await user_view(store, user), "key": key})


async def _audit(request: Request, action: str, target: str | None, details: str = "") -> None:
    """The audit log's entry for a change this request made (who: :func:`proxy.hub.caller.admin_identity`)."""
    await audit.record_request(await team_of(request), request.scope, action, target, details)


async def _store(request: Request):
    team = await team_of(request)
    if team is None:  # no store: nobody by any name
        return _EMPTY
    return team.store


class _NoStore:
    """Stands in for a store that does not exist yet: every user is unknown (404 ``user_not_found``)."""

    async def get_user(self, name: str) -> None:
        return None

    async def remove_user(self, name: str) -> bool:
        return False


_EMPTY: Any = _NoStore()


# -- usage ---------------------------------------------------------------------------------------------


@admin
async def usage(request: Request) -> Response:
    query = request.query_params
    team = await team_of(request)
    report = await usage_report(team.store if team else None, user=query.get("user"), since=query.get("since"),
                                until=query.get("until"), group_by=query.get("group_by"))
    return json_response(report)


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/users", list_users, methods=["GET"]),
        Route(f"{PREFIX}/users", create_user, methods=["POST"]),
        Route(f"{PREFIX}/users/{{name}}", get_user, methods=["GET"]),
        Route(f"{PREFIX}/users/{{name}}", change_user, methods=["PATCH"]),
        Route(f"{PREFIX}/users/{{name}}", remove_user, methods=["DELETE"]),
        Route(f"{PREFIX}/users/{{name}}/rotate-key", rotate_key, methods=["POST"]),
        Route(f"{PREFIX}/usage", usage, methods=["GET"]),
    ]
