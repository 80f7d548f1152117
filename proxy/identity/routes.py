"""The sign-in routes: ``/auth/oidc/login`` → the provider → ``/auth/oidc/callback`` → a session;
``GET /auth/session`` (who is signed in, and the page's CSRF token); ``POST /auth/logout``.

A sign-in in progress is a store record keyed by the hash of its ``state`` and bound to the browser
that started it (a cookie whose hash the record holds), used once, for ten minutes: a callback
replayed, forged or opened in another browser is refused. PKCE and the nonce are Authlib's checks
(:mod:`proxy.identity.oidc`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from collections import deque
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.errors import AuthenticationFailed, BadRequest, NotFound, ProxyError, RateLimited
from proxy.hub.caller import CALLER
from proxy.hub.json_response import json_response
from proxy.identity import sessions
from proxy.identity.people import person_from_claims
from proxy.identity.service import IdentityService
from proxy.team import audit
from proxy.team.admin_api import admin, team_of

FLOW = "oidc_flow"  # record kind
FLOW_COOKIE = "subrelay_signin"
FLOW_SECONDS = 600
_NEXT = ("/admin", "/account")
_PAGE_HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                 "cache-control": "no-store", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


class _StartBudget:
    """Sign-ins started in the last :data:`FLOW_SECONDS` in this process, at most :data:`MAX_STARTS`: each
    leaves a store record for ten minutes, and anyone may start one."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def admit(self) -> None:
        now = time.monotonic()
        while self._times and self._times[0] < now - FLOW_SECONDS:
            self._times.popleft()
        if len(self._times) >= MAX_STARTS:
            raise RateLimited("Too many sign-ins were started in the last minutes; try again shortly.",
                              retry_after=30.0)
        self._times.append(now)


MAX_STARTS = 2000
_STARTS = _StartBudget()


def _service(request: Request) -> IdentityService:
    service = getattr(request.app.state, "identity", None)
    if service is None or service.oidc is None:
        raise NotFound("Single sign-on is not configured here ([identity.oidc] in subrelay.toml).",
                       code="sign_in_not_configured")
    return service


def _tls(request: Request) -> bool:
    return request.url.scheme == "https"


def _redirect_url(request: Request, service: IdentityService) -> str:
    configured = service.config.oidc.redirect_url if service.config.oidc else ""
    return configured or f"{request.url.scheme}://{request.headers['host']}/auth/oidc/callback"


async def login(request: Request) -> Response:
    service = _service(request)
    target = request.query_params.get("next", "/account")
    if target not in _NEXT:
        raise BadRequest(f"'next' must be one of {', '.join(_NEXT)}.", param="next", code="invalid_next")
    _STARTS.admit()
    team = service.team(create=True)
    flow = await service.oidc.start(_redirect_url(request, service))
    binding = secrets.token_urlsafe(32)
    record = {"nonce": flow.nonce, "verifier": flow.code_verifier, "next": target,
              "browser": hashlib.sha256(binding.encode()).hexdigest()}
    await team.store.put_record(FLOW, hashlib.sha256(flow.state.encode()).hexdigest(), orjson.dumps(record), "",
                                time.time() + FLOW_SECONDS)
    response = RedirectResponse(flow.url, status_code=302, headers={"cache-control": "no-store"})
    response.headers.append("set-cookie", f"{FLOW_COOKIE}={binding}; Path=/auth/oidc; Max-Age={FLOW_SECONDS}; "
                                          f"HttpOnly; SameSite=Lax" + ("; Secure" if _tls(request) else ""))
    return response


async def callback(request: Request) -> Response:
    service = _service(request)
    try:
        return await _callback(request, service)
    except ProxyError as error:
        page = (f"<!doctype html><title>subrelay · sign-in</title><h1>Sign-in failed</h1>"
                f"<p id='error'>{html.escape(error.message)}</p><p><a href='/account'>Back</a></p>")
        return HTMLResponse(page, status_code=error.status_code, headers=_PAGE_HEADERS)


async def _callback(request: Request, service: IdentityService) -> Response:
    query = request.query_params
    if query.get("error"):
        raise AuthenticationFailed(f"The provider did not sign you in ({query.get('error')[:80]}: "
                                   f"{(query.get('error_description') or '')[:200]}).", code="oidc_refused")
    state, code = query.get("state") or "", query.get("code") or ""
    if query.get("iss") is not None and query.get("iss") != service.config.oidc.issuer:  # RFC 9207: a mix-up
        raise AuthenticationFailed("This sign-in came back from another issuer than the configured one.",
                                   code="oidc_state_invalid")
    team = service.team()  # a callback never creates the store: only a started sign-in does
    key = hashlib.sha256(state.encode()).hexdigest()
    found = await team.store.get_record(FLOW, key) if state and code and team is not None else None
    if found is None:
        raise AuthenticationFailed("This sign-in is unknown or has expired; start again.", code="oidc_state_invalid")
    await team.store.delete_record(FLOW, key)  # one use, whatever happens next
    flow = orjson.loads(found[0])
    binding = request.cookies.get(FLOW_COOKIE, "")
    if not hmac.compare_digest(hashlib.sha256(binding.encode()).hexdigest(), flow["browser"]):
        raise AuthenticationFailed("This sign-in was started in another browser; start again here.",
                                   code="oidc_state_invalid")
    claims = await service.oidc.finish(code, _redirect_url(request, service), flow["nonce"], flow["verifier"])
    caller = await service.caller_for(person_from_claims(claims, service.config), via="session")
    token, session = await sessions.start(team.store, identity=caller.actor, admin=caller.admin,
                                          user=caller.name if caller.kind == "user" else None,
                                          hours=service.config.session_hours)
    target = flow["next"] if flow["next"] != "/admin" or session.admin else "/account"
    # A page that moves on by itself: the next load is then a same-origin navigation, not the tail of the
    # provider's cross-site redirect (the edge refuses cross-site requests to these surfaces).
    page = (f"<!doctype html><meta http-equiv='refresh' content='0;url={quote(target)}'><title>subrelay</title>"
            f"<p>Signed in as {html.escape(session.identity)}. <a href='{quote(target)}'>Continue</a></p>")
    response = HTMLResponse(page, headers=_PAGE_HEADERS)
    response.headers.append("set-cookie", sessions.set_cookie(token, _tls(request), int(session.expires_at - time.time())))
    response.headers.append("set-cookie", f"{FLOW_COOKIE}=; Path=/auth/oidc; Max-Age=0; HttpOnly; SameSite=Lax")
    return response


async def who(request: Request) -> Response:
    """Who this browser is signed in as (and its CSRF token), or ``signed_in: false``."""
    service = getattr(request.app.state, "identity", None)
    caller = CALLER.get()
    token = request.scope.get("subrelay.session")
    session = None
    if service is not None and token:
        store = service.store()
        session = await sessions.find(store, token) if store is not None else None
    body = {"signed_in": caller.via in ("session", "header"), "identity": caller.identity or None,
            "admin": caller.admin, "user": caller.name if caller.kind == "user" else None,
            "via": caller.via if caller.via != "key" else None,
            "csrf_token": session.csrf if session else None,
            "expires_at": int(session.expires_at) if session else None,
            "sign_in": {"oidc": bool(service and service.oidc)}}
    return json_response(body, headers={"cache-control": "no-store"})


async def logout(request: Request) -> Response:
    service = getattr(request.app.state, "identity", None)
    token = request.scope.get("subrelay.session")
    if service is not None and token:
        store = service.store()
        if store is not None:
            await sessions.end(store, token)
    response = json_response({"signed_in": False})
    response.headers.append("set-cookie", sessions.set_cookie("", _tls(request), 0))
    return response


@admin
async def revoke_sessions(request: Request) -> Response:
    """``DELETE /api/admin/users/{name}/sessions``: sign a member out everywhere, at once on every replica."""
    service = getattr(request.app.state, "identity", None)
    store = service.store() if service is not None else None
    ended = await sessions.end_all_of_user(store, request.path_params["name"]) if store is not None else 0
    await audit.record_request(await team_of(request), request.scope, "user.sessions_revoke",
                               request.path_params["name"], f"{ended} sign-in session(s) ended")
    return json_response({"object": "sessions.deleted", "name": request.path_params["name"], "deleted": ended})


def routes() -> list[Route]:
    return [Route("/api/admin/users/{name}/sessions", revoke_sessions, methods=["DELETE"]),
            Route("/auth/oidc/login", login, methods=["GET"]),
            Route("/auth/oidc/callback", callback, methods=["GET"]),
            Route("/auth/session", who, methods=["GET"]),
            Route("/auth/logout", logout, methods=["POST"])]
