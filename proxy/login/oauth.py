"""The ChatGPT OAuth flows, as pure requests plus small async calls: browser (authorization code +
PKCE, loopback callback) and device code. Nothing here touches files or prints; the CLI and the
account API drive it. subrelay names itself (``originator=subrelay``) and uses the public client id
every program uses for this flow."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlsplit

import httpx
import orjson

from proxy.credentials.codex import CODEX_CLIENT_ID
from proxy.errors import AuthenticationFailed, BadRequest, UpstreamFailure

SCOPE = "openid profile email offline_access"


class LoginPending(Exception):
    """The device login is not approved yet; ``slow_down`` asks for a longer interval."""

    def __init__(self, slow_down: bool = False) -> None:
        super().__init__("pending")
        self.slow_down = slow_down


@dataclass(slots=True)
class BrowserLogin:
    """One browser login in progress: what to open, and what proves the answer is ours."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


def browser_login(auth_base: str, redirect_uri: str) -> BrowserLogin:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": CODEX_CLIENT_ID, "redirect_uri": redirect_uri, "scope": SCOPE,
             "code_challenge": challenge, "code_challenge_method": "S256", "id_token_add_organizations": "true",
             "codex_cli_simplified_flow": "true", "state": state, "originator": "subrelay"}
    return BrowserLogin(f"{auth_base}/oauth/authorize?{urlencode(query)}", state, verifier, redirect_uri)


def code_from_redirect(login: BrowserLogin, redirect: str) -> str:
    """The authorization code in the URL the browser came back to (a 400 for a wrong state or a refusal)."""
    parsed = urlparse(redirect.strip())
    if parsed.scheme not in ("http", "https") or not parsed.query:
        raise BadRequest("That is not the address the browser ended on: paste the whole URL from its address bar "
                         f"(it starts with {login.redirect_uri}?code=…).", code="not_a_redirect_url")
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    if query.get("state") != login.state:
        raise BadRequest("That redirect does not belong to this login (state mismatch); start the login again.",
                         code="state_mismatch")
    if "error" in query:
        raise AuthenticationFailed(f"The login was not completed: {query.get('error_description') or query['error']}.",
                                   code=query["error"][:64])
    if not query.get("code"):
        raise BadRequest("That URL has no authorization code; paste the whole address the browser ended on.",
                         code="missing_code")
    return query["code"]


async def exchange_code(http: httpx.AsyncClient, token_url: str, code: str, verifier: str,
                        redirect_uri: str) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": CODEX_CLIENT_ID, "code_verifier": verifier}
    response = await _post(http, token_url, data=form)
    tokens = _json(response)
    if response.status_code != 200 or not isinstance(tokens.get("access_token"), str):
        reason = tokens.get("error_description") or tokens.get("error") or f"HTTP {response.status_code}"
        raise AuthenticationFailed(f"The sign-in could not be completed ({reason}).", code="login_failed")
    return tokens


@dataclass(slots=True)
class DeviceCode:
    device_auth_id: str
    user_code: str
    interval: float
    expires_at: float  # epoch seconds
    verification_uri: str


async def start_device_login(http: httpx.AsyncClient, auth_base: str) -> DeviceCode:
    response = await _post(http, f"{auth_base}/api/accounts/deviceauth/usercode", json={"client_id": CODEX_CLIENT_ID})
    if response.status_code == 404:
        raise UpstreamFailure("Device login is not enabled for this account's server; use the browser login.",
                              code="device_login_unavailable")
    body = _json(response)
    user_code = body.get("user_code") or body.get("usercode")
    if response.status_code != 200 or not isinstance(body.get("device_auth_id"), str) or not isinstance(user_code, str):
        raise UpstreamFailure(f"The device login could not be started (HTTP {response.status_code}).")
    return DeviceCode(body["device_auth_id"], user_code, _seconds(body.get("interval"), 5.0), _expiry(body),
                      f"{auth_base}/codex/device")


async def poll_device_login(http: httpx.AsyncClient, auth_base: str, token_url: str, device: DeviceCode) -> dict[str, Any]:
    """One poll: the tokens once approved; raises :class:`LoginPending` while waiting."""
    if time.time() > device.expires_at:
        raise AuthenticationFailed("The device code expired before it was approved; start again.", code="expired_token")
    response = await _post(http, f"{auth_base}/api/accounts/deviceauth/token",
                           json={"device_auth_id": device.device_auth_id, "user_code": device.user_code})
    body = _json(response)
    error = body.get("error") if isinstance(body.get("error"), str) else (body.get("error") or {}).get("code")
    if response.status_code == 200 and isinstance(body.get("authorization_code"), str):
        return await exchange_code(http, token_url, body["authorization_code"], str(body.get("code_verifier", "")),
                                   f"{auth_base}/deviceauth/callback")
    if error == "slow_down":
        raise LoginPending(slow_down=True)
    if response.status_code in (403, 404) or error == "authorization_pending":
        raise LoginPending()
    if error in ("expired_token", "access_denied"):
        raise AuthenticationFailed("The device login was " + ("denied." if error == "access_denied" else "not approved in time."),
                                   code=error)
    raise UpstreamFailure(f"The device login failed (HTTP {response.status_code}).")


async def _post(http: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await http.post(url, headers={"Accept": "application/json"}, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        where = urlsplit(url)
        raise UpstreamFailure(f"Could not reach the ChatGPT login server at {where.scheme}://{where.netloc} "
                              f"({type(exc).__name__}): check this machine's network or proxy settings "
                              "(SUBRELAY_AUTH_BASE_URL names another server).") from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if 0 < number <= 60 else default


def _expiry(body: dict[str, Any]) -> float:
    if isinstance(body.get("expires_in"), (int, float)):
        return time.time() + float(body["expires_in"])
    if isinstance(body.get("expires_at"), str):
        try:
            return datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time() + 15 * 60
