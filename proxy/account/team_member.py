"""The account surface for a team user: their own login's status, saving the login their device flow
produced, logging out — the same answers as the single-login API, acting on the caller's login only."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from proxy.money.budgets import parse_budgets
from proxy.money.prices import dollars
from proxy.team.ladder import rung
from proxy.team.usage import person_usage
from proxy.team.views import budget_spend
from proxy.account.status import fetch_usage, summarise_usage
import proxy.credentials.access_token as access_token
from proxy.credentials.access_token import TokenAccount
from proxy.errors import ProxyError
from proxy.login.store import describe
from proxy.observe.redact import secrets
from proxy.state.team import OWNER_LOGIN, StoreError, new_login_version
from proxy.team.context import Team
from proxy.team.unavailable import store_unavailable
from proxy.team.logins import CallerLogins, seal_login
from proxy.team import member_seal
from proxy.team.one_person import check_account_free


async def save_user_login(team: Team, name: str, tokens: dict[str, Any], *, shared_account: str = "refuse",
                          owner_auth_path: str | None = None) -> str | None:
    """Store ``tokens`` as ``name``'s login (sealed), replacing any earlier one (a new login wins).
    A ChatGPT account another person already linked is refused (:mod:`proxy.team.one_person`); the
    answer is a warning to show, when the same person links it to a second user of theirs."""
    secrets.add(tokens.get("access_token"), tokens.get("refresh_token"), tokens.get("id_token"))
    account = describe(tokens)
    warning = await _may_link(team, name, account.account_id, shared_account, owner_auth_path)
    kept = {key: tokens[key] for key in ("id_token", "access_token", "refresh_token") if isinstance(tokens.get(key), str)}
    if account.account_id:
        kept["account_id"] = account.account_id
    auth = {"tokens": kept, "last_refresh": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    await _store_login(team, name, auth)
    return warning


async def save_user_access_token(team: Team, name: str, token: str, account: TokenAccount, *,
                                 shared_account: str = "refuse", owner_auth_path: str | None = None) -> str | None:
    """Store a Codex personal access token as ``name``'s login (sealed, with whoami's answer, so its
    account is known without asking again), replacing any earlier login. The same rules as a ChatGPT
    login: one account, one person; with seal = "member", sealed for the member."""
    secrets.add(token)
    warning = await _may_link(team, name, account.account_id, shared_account, owner_auth_path)
    await _store_login(team, name, access_token.auth_json(token, account))
    return warning


async def _may_link(team: Team, name: str, account_id: str | None, shared_account: str,
                    owner_auth_path: str | None) -> str | None:
    """Refuse an account another person linked (a warning for the same person's second user), and with
    seal = "member" make sure the member's data key is open in this request (their credential's, or new)."""
    try:
        warning = await check_account_free(team.store, name, account_id, mode=shared_account,
                                           owner_auth_path=owner_auth_path)
        if member_seal.applies(team, name):
            await member_seal.unlock(team, name, create=True)
    except StoreError as exc:
        raise store_unavailable(exc) from None
    return warning


async def _store_login(team: Team, name: str, auth: dict[str, Any]) -> None:
    try:
        for _ in range(5):  # a refresh racing this login loses: retry the compare-and-set on the newest version
            stored = await team.store.get_login(name)
            # A new login gets a version no earlier login of this name ever had: a replica that cached the
            # old one sees the change on its very next request (proxy.state.team.new_login_version).
            version = max(new_login_version(), stored.version + 1 if stored else 0)
            if await team.store.put_login(name, seal_login(team, name, auth, version),
                                          expected_version=stored.version if stored else None):
                return
        raise ProxyError("The login could not be saved (it kept changing); try again.", code="login_conflict",
                         status_code=409)
    except StoreError as exc:
        raise store_unavailable(exc) from None


async def remove_user_login(team: Team, name: str) -> None:
    try:
        await team.store.delete_login(name)
    except StoreError as exc:
        raise store_unavailable(exc) from None


async def user_status(state, name: str) -> dict[str, Any]:
    """The status shape of :func:`proxy.account.status.chatgpt_status`, for ``name``'s own login."""
    status: dict[str, Any] = {"vendor": "openai", "connected": False, "account_email": None, "plan": None,
                              "account_id": None, "expires_at": None, "usage": None, "usage_error": None,
                              "user": None if name == OWNER_LOGIN else name}
    team = state.team
    try:
        stored = await team.store.get_login(name) if team is not None else None
    except StoreError as exc:
        raise store_unavailable(exc) from None
    if stored is None:
        if name != OWNER_LOGIN:
            status["team"] = await own_figures(state, name)
        return status
    status.update(account_email=stored.email, plan=stored.plan_type, account_id=stored.account_id)
    source = next((p.credentials for p in state.router.providers.values() if isinstance(p.credentials, CallerLogins)),
                  None)
    if source is None:
        status["usage_error"] = "No Codex provider is configured."
        return status
    try:
        credential = await source.user_login(name).current()
        status["login"] = "access_token" if access_token.is_access_token(credential.access_token) else "chatgpt"
        status.update(connected=True, expires_at=int(credential.expires_at * 1000) if credential.expires_at else None)
        try:
            raw = await fetch_usage(state.upstream.http, state.settings, credential)
            status["usage"] = summarise_usage(raw)
            status["plan"] = status["plan"] or raw.get("plan_type")
        except ProxyError as exc:
            status["usage_error"] = exc.message
    except ProxyError as exc:
        status["usage_error"] = exc.message
    status["checked_at"] = int(time.time())
    if name != OWNER_LOGIN:
        status["team"] = await own_figures(state, name)
    return status


async def _ladder_state(state, name: str) -> dict[str, Any] | None:
    """Where the degradation ladder has this member now (from their own login's plan windows)."""
    steps = getattr(state.gate, "ladder", ()) if state.gate is not None else ()
    if not steps:
        return None
    login = await state.team.store.get_login(name)
    windows = await state.team.store.get_plan_windows(f"account:{login.account_id}") if login and login.account_id else None
    effort, model, applied, why = rung(steps, windows, time.time())
    return {"step": applied, "of": len(steps), "effort": effort, "model": model, "why": why}


async def own_figures(state, name: str, days: int = 7) -> dict[str, Any]:
    """What a team member sees of themselves: their limits and their usage per day (the last ``days``
    days, figures not yet written to the store included)."""
    team = state.team
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (days - 1) * 86400))
    try:
        user = await team.store.get_user(name)
        rows = await person_usage(team.store, user, since=since) if user is not None else []
    except StoreError as exc:
        raise store_unavailable(exc) from None
    per_day: dict[str, dict[str, int]] = {}
    book = state.gate.book if state.gate is not None else None
    for row in [*rows, *(book.pending(user.person) if book is not None and user is not None else ())]:
        if row.day < since:
            continue
        day = per_day.setdefault(row.day, {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                           "cost_micros": 0})
        for field in day:
            day[field] += getattr(row, field)
    try:  # each budget: spent this period and what is left (their own only)
        spend = await budget_spend(team.store, user, parse_budgets(user.budgets)) if user else []
        ladder = await _ladder_state(state, name)
    except StoreError as exc:
        raise store_unavailable(exc) from None
    for figures in per_day.values():
        figures["cost_usd"] = dollars(figures["cost_micros"])
    return {"user": name, "limits": {"rpm": user.rpm, "tpm": user.tpm, "daily_tokens": user.daily_tokens,
                                     "models": list(user.models), "fallback": user.fallback,
                                     "max_concurrent": user.max_concurrent, "max_effort": user.max_effort}
            if user else None, "spend": spend, "ladder": ladder,
            "usage": [{"day": day, **figures} for day, figures in sorted(per_day.items())]}
