"""The mock OpenAI auth server and usage endpoint (login.md §2–§3, codex.md §6), loopback only.

Served by :class:`tests.mock_upstream.server.MockCodexServer` so that the tokens a login obtains are
the ones the mock Codex backend accepts. It checks what the real one would: the client id, the
redirect URI, ``state`` round trip (the client's job, tested there) and the PKCE verifier against
the S256 challenge. Pages have stable element ids so a headless browser can click through them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from .asgi import send_json

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
WHOAMI_PATH = "/api/accounts/v1/user-auth-credential/whoami"  # CODEX_AUTHAPI_BASE_URL (…/api/accounts) + /v1/…


@dataclass
class DeviceLogin:
    user_code: str
    expires_at: float
    status: str = "pending"  # pending | approved | denied
    polls: int = 0


@dataclass
class AuthState:
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # code → challenge, redirect_uri
    devices: dict[str, DeviceLogin] = field(default_factory=dict)  # device_auth_id → login
    device_lifetime: float = 900.0
    device_interval: int = 1
    slow_down_polls: int = 0  # answer this many polls with slow_down first
    email: str = "ada@example.com"
    plan: str = "pro"
    usage_calls: int = 0
    # Codex personal access tokens (at-…) → what whoami says of each (personal_access_token.rs's fields).
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    whoami_calls: int = 0


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class MockAuth:
    """The auth endpoints; ``issue`` mints tokens the Codex mock accepts."""

    def __init__(self, state: AuthState, issue) -> None:
        self.state = state
        self.issue = issue

    def handles(self, path: str) -> bool:
        return path.startswith(("/oauth/authorize", "/api/accounts/deviceauth/", "/codex/device",
                                "/backend-api/wham/usage", WHOAMI_PATH)) or path == "/oauth/token"

    async def __call__(self, scope, body: bytes, headers: dict[str, str], send, valid_access: set[str]) -> None:
        path, method = scope["path"], scope["method"]
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        if path == "/oauth/authorize" and method == "GET":
            await self._authorize_page(query, send)
        elif path == "/oauth/authorize/decision" and method == "POST":
            await self._decide(_form(body), send)
        elif path == "/oauth/token":
            await self._exchange(_form(body), send)
        elif path == "/api/accounts/deviceauth/usercode" and method == "POST":
            await self._device_start(orjson.loads(body or b"{}"), send)
        elif path == "/api/accounts/deviceauth/token" and method == "POST":
            await self._device_poll(orjson.loads(body or b"{}"), send)
        elif path == "/codex/device" and method == "GET":
            await _page(send, 200, "Connect a device", '''<form method="post" action="/codex/device/decision">
<label>Code <input id="user-code" name="user_code" autocomplete="off"></label>
<button id="approve" name="decision" value="approve">Continue</button>
<button id="deny" name="decision" value="deny">Cancel</button></form>''')
        elif path == "/codex/device/decision" and method == "POST":
            await self._device_decide(_form(body), send)
        elif path == "/backend-api/wham/usage":
            await self._usage(headers, send, valid_access)
        elif path == WHOAMI_PATH and method == "GET":
            await self._whoami(headers, send, valid_access)
        else:
            await send_json(send, 404, {"detail": "Not Found"})

    # -- browser flow ---------------------------------------------------------------------------------

    async def _authorize_page(self, query: dict[str, str], send) -> None:
        problem = None
        if query.get("client_id") != CLIENT_ID:
            problem = "unknown client_id"
        elif query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            problem = "response_type=code and code_challenge_method=S256 are required"
        elif not query.get("code_challenge") or not query.get("state") or not query.get("redirect_uri"):
            problem = "code_challenge, state and redirect_uri are required"
        if problem:
            await _page(send, 400, "Error", f"<p id='error'>{html.escape(problem)}</p>")
            return
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in query.items())
        await _page(send, 200, "Sign in to ChatGPT", f'''<p>Signed in as {html.escape(self.state.email)}.
Allow <b>{html.escape(query.get("originator", "an app"))}</b> to use your ChatGPT plan?</p>
<form method="post" action="/oauth/authorize/decision">{hidden}
<button id="approve" name="decision" value="approve">Continue</button>
<button id="deny" name="decision" value="deny">Cancel</button></form>''')

    async def _decide(self, form: dict[str, str], send) -> None:
        target = form["redirect_uri"]
        if form.get("decision") != "approve":
            query = {"error": "access_denied", "error_description": "The user declined.", "state": form.get("state", "")}
        else:
            code = "ac_" + secrets.token_urlsafe(24)
            self.state.codes[code] = {"challenge": form["code_challenge"], "redirect_uri": target}
            query = {"code": code, "state": form.get("state", "")}
        location = f"{target}{'&' if '?' in target else '?'}{urlencode(query)}"
        await send({"type": "http.response.start", "status": 302, "headers": [(b"location", location.encode())]})
        await send({"type": "http.response.body", "body": b""})

    async def _exchange(self, form: dict[str, str], send) -> None:
        grant = self.state.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or form.get("client_id") != CLIENT_ID or grant is None:
            await send_json(send, 400, {"error": "invalid_grant", "error_description": "Unknown or used code."})
            return
        expected = grant["redirect_uri"]
        redirect = form.get("redirect_uri", "")
        if (redirect != expected) if expected != "device" else not redirect.endswith("/deviceauth/callback"):
            await send_json(send, 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch."})
            return
        if challenge_of(form.get("code_verifier", "")) != grant["challenge"]:
            await send_json(send, 400, {"error": "invalid_grant", "error_description": "PKCE verification failed."})
            return
        await send_json(send, 200, {**self.issue(self.state.email, self.state.plan), "token_type": "Bearer",
                                    "expires_in": 3600})

    # -- device flow ----------------------------------------------------------------------------------

    async def _device_start(self, body: dict[str, Any], send) -> None:
        if body.get("client_id") != CLIENT_ID:
            await send_json(send, 400, {"error": "invalid_client"})
            return
        device_id = "dev_" + secrets.token_urlsafe(16)
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
        expires = time.time() + self.state.device_lifetime
        self.state.devices[device_id] = DeviceLogin(user_code, expires)
        await send_json(send, 200, {"device_auth_id": device_id, "user_code": user_code,
                                    "interval": str(self.state.device_interval),
                                    "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))})

    async def _device_poll(self, body: dict[str, Any], send) -> None:
        login = self.state.devices.get(body.get("device_auth_id", ""))
        if login is None or login.user_code != body.get("user_code"):
            await send_json(send, 404, {"error": "not_found"})
            return
        login.polls += 1
        if time.time() > login.expires_at:
            await send_json(send, 400, {"error": "expired_token"})
        elif login.status == "denied":
            await send_json(send, 400, {"error": "access_denied"})
        elif login.polls <= self.state.slow_down_polls:
            await send_json(send, 403, {"error": "slow_down"})
        elif login.status == "pending":
            await send_json(send, 403, {"error": "authorization_pending"})
        else:
            verifier = secrets.token_urlsafe(48)
            code = "ac_" + secrets.token_urlsafe(24)
            self.state.codes[code] = {"challenge": challenge_of(verifier), "redirect_uri": "device"}
            self.state.devices.pop(body["device_auth_id"], None)
            await send_json(send, 200, {"authorization_code": code, "code_challenge": challenge_of(verifier),
                                        "code_verifier": verifier})

    async def _device_decide(self, form: dict[str, str], send) -> None:
        code = form.get("user_code", "").strip().upper()
        login = next((d for d in self.state.devices.values() if d.user_code == code), None)
        if login is None:
            await _page(send, 404, "Unknown code", "<p id='result'>That code is not valid.</p>")
            return
        login.status = "approved" if form.get("decision") == "approve" else "denied"
        await _page(send, 200, "Done", f"<p id='result'>Device {login.status}.</p>")

    # -- personal access tokens -----------------------------------------------------------------------

    async def _whoami(self, headers: dict[str, str], send, valid_access: set[str]) -> None:
        """``GET /api/accounts/v1/user-auth-credential/whoami``: the account behind a live access token
        (a revoked one is also gone from the backend's valid tokens: both answer 401)."""
        self.state.whoami_calls += 1
        token = headers.get("authorization", "").removeprefix("Bearer ")
        account = self.state.access_tokens.get(token)
        if account is None or token not in valid_access:
            await send_json(send, 401, {"error": {"message": "Invalid or revoked access token.",
                                                  "type": "invalid_request_error", "code": "invalid_token"}})
            return
        await send_json(send, 200, account)

    # -- usage ----------------------------------------------------------------------------------------

    async def _usage(self, headers: dict[str, str], send, valid_access: set[str]) -> None:
        self.state.usage_calls += 1
        if headers.get("authorization", "").removeprefix("Bearer ") not in valid_access:
            await send_json(send, 401, {"detail": "Unauthorized"})
            return
        now = int(time.time())
        await send_json(send, 200, {
            "plan_type": self.state.plan,
            "rate_limit": {"allowed": True, "limit_reached": False,
                           "primary_window": {"used_percent": 42, "limit_window_seconds": 18000,
                                              "reset_after_seconds": 7200, "reset_at": now + 7200},
                           "secondary_window": {"used_percent": 17, "limit_window_seconds": 604800,
                                                "reset_after_seconds": 259200, "reset_at": now + 259200}},
            "credits": {"has_credits": False, "unlimited": False, "balance": "0"}})


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


async def _page(send, status: int, title: str, content: str) -> None:
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>{content}</body></html>"
    data = page.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
