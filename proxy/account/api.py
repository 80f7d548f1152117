"""The account API on the running server, in the shape of the seed's endpoints (login.md §5), plus
the usage endpoints the Codex CLI's ``/status`` reads.

Under ``/api/llm/subscription/openai/``: ``status``, ``device/start`` → an opaque handle (OpenAI's
device id and the code exchange stay here), ``device/poll``, ``logout``, ``models`` and ``usage``.
Pending logins are few (:data:`MAX_PENDING`), expire with their code, and their handles are 256-bit
random; ``logout`` cancels them; an unknown handle is a 404. No response ever carries a token.
Protection: ``SUBRELAY_ADMIN_KEY`` (``Authorization: Bearer`` or ``x-admin-key``) whenever it is set,
and always when listening beyond loopback (:class:`AdminGuard`); the edge's Host/Origin rules apply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from functools import lru_cache
from importlib import resources

import httpx
from starlette.requests import Request
from starlette.responses import Response

from proxy.account.status import chatgpt_status, fetch_usage, provider_states
from proxy.config.settings import Settings, is_loopback
from proxy.errors import BadRequest, NotFound, PermissionDenied, ServiceUnavailable
from proxy.account.pending import MAX_PENDING  # noqa: F401 (the cap on logins in progress, part of this API)
from proxy.hub.checks import decode_json_object
from proxy.hub.json_response import json_response
from proxy.invocation import command
from proxy.login.oauth import (
    LoginPending,
    poll_device_login,
    start_device_login,
)
import proxy.credentials.access_token as access_token
from proxy.login.store import remove_login, save_access_token, save_login
from proxy.account.team_member import remove_user_login, save_user_access_token, save_user_login, user_status
from proxy.hub.caller import CALLER
from proxy.state.team import OWNER_LOGIN
from proxy.observe.metrics import COOLDOWNS, metrics_text

PREFIX = "/api/llm/subscription/openai"


class AdminGuard:
    """The admin key check for account endpoints: required when set, and set it must be beyond loopback."""

    def __init__(self, settings: Settings) -> None:
        self.key = settings.admin_key.encode() if settings.admin_key else None
        self.public = not is_loopback(settings.host)

    def check(self, request: Request) -> None:
        if CALLER.get().admin and CALLER.get().via != "key":  # an admin the edge named (SSO, trusted header)
            return
        if self.key is None:
            if self.public:
                raise PermissionDenied("The account API is off on a public address until SUBRELAY_ADMIN_KEY is set.",
                                       code="admin_key_required")
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        candidates = [request.headers.get("x-admin-key", "")]
        if scheme.lower() == "bearer":
            candidates.append(token.strip())
        elif scheme.lower() == "basic":  # the account page opened in a browser: the key is the password
            try:
                candidates.append(base64.b64decode(token.strip(), validate=True).decode("latin-1").partition(":")[2])
            except ValueError:
                pass
        if not any(c and hmac.compare_digest(c.encode("latin-1", "replace"), self.key) for c in candidates):
            raise PermissionDenied("This needs the admin key (SUBRELAY_ADMIN_KEY) in 'x-admin-key' or "
                                   "'Authorization: Bearer'.", code="admin_key_required")


def _state(request: Request):
    """For the endpoints that act on the caller's own login: a team member acts on theirs (and only
    theirs); anyone else needs the admin (:class:`AdminGuard`)."""
    state = request.app.state.subrelay
    if CALLER.get().kind != "user":
        state.admin.check(request)
    return state


def _operator_state(request: Request):
    """For the operator's surfaces (metrics, the provider table): never a team member, whatever the
    server's admin settings; the admin as :class:`AdminGuard` decides for everyone else."""
    state = request.app.state.subrelay
    if CALLER.get().kind == "user":
        raise PermissionDenied("This is the operator's view; a member's key cannot open it (the admin key can).",
                               code="admin_key_required")
    state.admin.check(request)
    return state


def _user(state=None) -> str | None:
    """Whose login in the team store is acted on: the calling team user's, or (with Redis, where the
    owner's login lives in the store too) the owner's; None for the owner's ``auth.json``."""
    caller = CALLER.get()
    if caller.kind == "user":
        return caller.name
    team = state.team if state is not None else None
    return OWNER_LOGIN if team is not None and team.store.remote else None


async def status(request: Request) -> Response:
    state = _state(request)
    return json_response(await _status(state))


async def _status(state) -> dict:
    if _user(state) is not None:
        return await user_status(state, _user(state))
    source = state.codex_source()
    result = await chatgpt_status(state.settings, state.upstream.http, source)
    return result


async def device_start(request: Request) -> Response:
    state = _state(request)
    # One login in progress per person: a new start replaces the caller's own earlier ones (so no member
    # can hold the shared slots and lock the others out), then the server-wide cap is checked before
    # asking the auth server (a refused start costs it nothing).
    await state.pending_logins.clear()
    await state.pending_logins.check_room()
    device = await start_device_login(state.upstream.http, state.settings.auth_base_url)
    handle = await state.pending_logins.add(device)
    return json_response({"device_code": handle, "user_code": device.user_code,
                          "verification_uri": device.verification_uri, "verification_uri_complete": None,
                          "expires_at": int(device.expires_at * 1000), "interval_seconds": int(device.interval)})


async def device_poll(request: Request) -> Response:
    state = _state(request)
    body = decode_json_object(await request.body())
    handle = body.get("device_code")
    pending = await state.pending_logins.get(handle)
    if time.time() < pending.next_poll:  # the client polls faster than the server allows: answer pending
        return json_response({**(await _status(state)), "connected": False, "pending": True})
    try:
        tokens = await poll_device_login(state.upstream.http, state.settings.auth_base_url,
                                         state.settings.codex_token_url, pending.device)
    except LoginPending as waiting:
        if waiting.slow_down:
            pending.device.interval += 5
        pending.next_poll = time.time() + pending.device.interval
        await state.pending_logins.save(handle, pending)
        return json_response({"vendor": "openai", "connected": False, "pending": True})
    except Exception:
        await state.pending_logins.drop(handle)
        raise
    await state.pending_logins.drop(handle)
    if _user(state) is not None:
        await save_user_login(state.team, _user(state), tokens, shared_account=state.settings.file.identity.shared_account,
                              owner_auth_path=state.settings.codex_auth_path)
    else:
        save_login(state.settings.codex_auth_path, tokens)
    return json_response({**(await _status(state)), "pending": False})


async def access_token_login(request: Request) -> Response:
    """``POST …/access-token`` ``{"access_token": "at-…"}``: log in with a Codex personal access token
    (the caller's own login for a team member). whoami names the account first, so a revoked or mistyped
    token is refused with a 401 and nothing is saved; the answer is the status, never the token."""
    state = _state(request)
    body = decode_json_object(await request.body())
    supplied = body.get("access_token")
    if not isinstance(supplied, str):
        raise BadRequest("Send {\"access_token\": \"at-...\"}.", param="access_token", code="missing_access_token")
    token = access_token.checked_token(supplied)
    who = "the token given"
    account = await access_token.whoami(state.upstream.http, state.settings.auth_base_url, token, who)
    if _user(state) is not None:
        await save_user_access_token(state.team, _user(state), token, account,
                                     shared_account=state.settings.file.identity.shared_account,
                                     owner_auth_path=state.settings.codex_auth_path)
    else:
        save_access_token(state.settings.codex_auth_path, token)
    return json_response(await _status(state))


async def logout(request: Request) -> Response:
    state = _state(request)
    await state.pending_logins.clear()
    if _user(state) is not None:
        await remove_user_login(state.team, _user(state))
        return json_response({"vendor": "openai", "connected": False})
    remove_login(state.settings.codex_auth_path)
    return json_response({"vendor": "openai", "connected": False})


async def models(request: Request) -> Response:
    """The Codex models of the login acted on: a member's own plan's catalogue (none without a login,
    never the owner's), else the server's."""
    state = _state(request)
    if CALLER.get().kind == "user":
        return json_response({"vendor": "openai", "models": await state.member_catalogs.own_slugs(state)})
    listed = [entry["id"] for entry in state.router.models() if entry["owned_by"] == "codex"]
    return json_response({"vendor": "openai", "models": listed})


async def usage(request: Request) -> Response:
    state = _state(request)
    report = await _status(state)
    if not report["connected"]:
        raise NotFound(f"Nobody is logged in to ChatGPT here; run `{command('login')}`.", code="not_logged_in")
    return json_response({"vendor": "openai", "plan": report["plan"], "usage": report["usage"],
                          "usage_error": report["usage_error"]})


async def providers(request: Request) -> Response:
    """Every provider's state, as ``subrelay status`` shows it (no secrets)."""
    return json_response({"providers": provider_states(_operator_state(request).settings)})


async def account_page(request: Request) -> Response:
    """The account page: static HTML and a little JS (no build step, no CDN); its data comes from the
    guarded API above, so the page itself holds nothing."""
    page = resources.files("proxy.account").joinpath("static/account.html").read_bytes()
    return Response(page, media_type="text/html", headers={
        "content-security-policy": f"default-src 'self'; script-src {_script_hashes(page)}; "
                                   "style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"})


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


@lru_cache(maxsize=4)
def _script_hashes(page: bytes) -> str:
    """The CSP sources for exactly the page's own inline scripts (a hash each): an injected script never runs."""
    hashes = [base64.b64encode(hashlib.sha256(script).digest()).decode() for script in _INLINE_SCRIPT.findall(page)]
    return " ".join(f"'sha256-{digest}'" for digest in hashes) or "'none'"


async def metrics(request: Request) -> Response:
    """Prometheus metrics (all workers merged): the operator's, behind the admin key (every member's
    per-user series would otherwise be one member's key away)."""
    state = _operator_state(request)
    COOLDOWNS.set(state.cooldowns.active())
    return Response(metrics_text(state.settings.metrics_dir), media_type="text/plain; version=0.0.4")


async def codex_cli_usage(request: Request) -> Response:
    """``GET /backend-api/wham/usage`` and ``/api/codex/usage``: the backend's own usage answer for the
    login, so a Codex CLI pointed at subrelay shows its limits in ``/status``. Behind the client key."""
    state = request.app.state.subrelay
    source = state.codex_source()
    if _user(state) is not None:
        source = next((p.credentials for p in state.router.providers.values() if hasattr(p.credentials, "user_login")),
                      None)
        source = source.user_login(_user(state)) if source is not None else None
        if source is None:
            raise NotFound("No Codex provider is configured here.", code="not_logged_in")
    elif source is None or source.problem() is not None:
        raise NotFound(f"Nobody is logged in to ChatGPT here; run `{command('login')}`.", code="not_logged_in")
    credential = await source.current()
    try:
        return json_response(await fetch_usage(state.upstream.http, state.settings, credential))
    except httpx.HTTPError:
        raise ServiceUnavailable("The usage endpoint could not be reached.") from None
