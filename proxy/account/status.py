"""What a person wants to know about their logins: which providers work, who is logged in to
ChatGPT, and how much of the plan's 5-hour and weekly allowance is left. Shared by
``subrelay status``, the account API and the account page; never holds a token."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from adapters.codex import USER_AGENT
from proxy.config.settings import Settings, chatgpt_base_url
from proxy.credentials.base import Credential
from proxy.credentials.codex import CodexCredentialSource
from proxy.errors import ProxyError
from proxy.login.store import Account, current_account
from proxy.observe.redact import redact_strings
from proxy.state.team import StoreError
from proxy.upstream.providers import build_inventory


async def account_status(settings: Settings, http: httpx.AsyncClient | None = None,
                         source: CodexCredentialSource | None = None) -> dict[str, Any]:
    providers = provider_states(settings)
    chatgpt = await chatgpt_status(settings, http, source)
    report = {"usable": any(p["state"] == "ok" for p in providers), "providers": providers, "chatgpt": chatgpt}
    redis = await redis_status(settings.env)
    if redis is not None:
        report["redis"] = redis
    return report


async def redis_status(env) -> dict[str, Any] | None:
    """Which Redis this host's replicas share (primary address, role, replicas and lag), or None without one;
    ``{"error": …}`` when it does not answer. Never a password: hosts only."""
    url = env.get("SUBRELAY_REDIS_URL")
    if not url:
        return None
    from proxy.state.redis.team import RedisTeamStore

    store = RedisTeamStore.from_url(url, env)
    try:
        return await store.replication()
    except StoreError as exc:
        from proxy.state.redis.target import describe, parse_target

        return {"target": describe(parse_target(url, env)), "writable": False, "error": str(exc)}
    finally:
        await store.close()


def provider_states(settings: Settings) -> list[dict[str, str]]:
    """Every provider's row of the inventory (name, source, state, detail, expiry); never a secret."""
    return [{"name": s.name, "source": s.source, "state": s.state, "detail": s.detail, "expiry": s.expiry}
            for s in build_inventory(settings).statuses]


async def chatgpt_status(settings: Settings, http: httpx.AsyncClient | None = None,
                         source: CodexCredentialSource | None = None) -> dict[str, Any]:
    """The seed's status shape (``vendor``, ``connected``, ``account_email``, ``expires_at`` in ms) plus
    plan, account id and usage."""
    account = current_account(settings.codex_auth_path)
    status: dict[str, Any] = {"vendor": "openai", "connected": False, "account_email": None, "plan": None,
                              "account_id": None, "expires_at": None, "usage": None, "usage_error": None}
    if account is None:
        return status
    own_client = http is None
    http = http or httpx.AsyncClient(timeout=15.0)
    source = source or CodexCredentialSource(settings.codex_auth_path, token_url=settings.codex_token_url, http=http,
                                             auth_base_url=settings.auth_base_url)
    try:
        credential = await source.current()  # refreshes first when due, like the seed
        account = current_account(settings.codex_auth_path) or account
        status["login"] = account.login
        if account.login == "access_token":  # who it is comes from whoami (asked once, by current())
            known = source.token_accounts.get(credential.access_token)
            account = Account(known.email if known else None, credential.plan_type, credential.account_id, None,
                              login=account.login)
        status.update(connected=True, account_email=account.email, plan=account.plan, account_id=account.account_id,
                      expires_at=int(account.expires_at * 1000) if account.expires_at else None)
        try:
            raw = await fetch_usage(http, settings, credential)
            status["usage"] = summarise_usage(raw)
            status["plan"] = status["plan"] or raw.get("plan_type")
        except ProxyError as exc:
            status["usage_error"] = exc.message
    except ProxyError as exc:
        status.update(account_email=account.email, plan=account.plan, account_id=account.account_id,
                      usage_error=exc.message, login=account.login)
    finally:
        if own_client:
            await http.aclose()
    return status


async def fetch_usage(http: httpx.AsyncClient, settings: Settings, credential: Credential) -> dict[str, Any]:
    """``GET …/backend-api/wham/usage`` with the login, as the backend answers it."""
    headers = {"Authorization": f"Bearer {credential.access_token}", "originator": "subrelay", "User-Agent": USER_AGENT,
               "Accept": "application/json"}
    if credential.account_id:
        headers["chatgpt-account-id"] = credential.account_id
    try:
        response = await http.get(f"{chatgpt_base_url(settings)}/wham/usage", headers=headers, timeout=15.0)
    except httpx.HTTPError as exc:
        raise ProxyError(f"The usage endpoint could not be reached ({type(exc).__name__}).", status_code=502,
                         code="usage_unavailable") from None
    if response.status_code != 200:
        raise ProxyError(f"The usage endpoint answered HTTP {response.status_code}.", status_code=502,
                         code="usage_unavailable")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise ProxyError("The usage endpoint answered something that is not usage.", status_code=502,
                         code="usage_unavailable")
    return redact_strings(data)  # shown by status, the usage endpoints and `subrelay status`: no echoed secret


def summarise_usage(raw: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The 5-hour and weekly windows (percent used, reset time) and credits, ready to show."""
    now = time.time() if now is None else now
    limits = raw.get("rate_limit") if isinstance(raw.get("rate_limit"), dict) else {}
    windows = []
    for key in ("primary_window", "secondary_window"):
        window = limits.get(key)
        if not isinstance(window, dict):
            continue
        seconds = window.get("limit_window_seconds")
        name = "5-hour" if seconds == 18000 else "weekly" if seconds == 604800 else (
            f"{int(seconds) // 3600}-hour" if isinstance(seconds, (int, float)) else key.split("_")[0])
        reset_at = window.get("reset_at")
        if not isinstance(reset_at, (int, float)) and isinstance(window.get("reset_after_seconds"), (int, float)):
            reset_at = now + window["reset_after_seconds"]
        used = window.get("used_percent")
        windows.append({"name": name, "used_percent": float(used) if isinstance(used, (int, float)) else 0.0,
                        "resets_at": int(reset_at) if isinstance(reset_at, (int, float)) else None,
                        "resets_at_text": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reset_at))
                        if isinstance(reset_at, (int, float)) else "unknown"})
    credits = raw.get("credits") if isinstance(raw.get("credits"), dict) else None
    credits_text = None
    if credits and (credits.get("has_credits") or credits.get("unlimited")):
        credits_text = "unlimited" if credits.get("unlimited") else str(credits.get("balance"))
    return {"plan": raw.get("plan_type"), "limit_reached": bool(limits.get("limit_reached")), "windows": windows,
            "credits": credits_text}
