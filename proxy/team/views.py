"""What an admin sees of a user, in the admin API, the admin page and ``subrelay users show``: the record
without its key hash, their login's public part (account, email, plan; never a token) and that login's
plan windows."""

from __future__ import annotations

import time
from typing import Any

from proxy.money.budgets import Budget, parse_budgets
from proxy.money.prices import dollars
from proxy.state.team import TeamStore, User
from proxy.team.usage import person_usage


async def user_view(store: TeamStore, user: User) -> dict[str, Any]:
    """What an admin may see of a user: the record without its key hash, the login's public part
    (account, email, plan; never a token) and that login's plan windows."""
    login = await store.get_login(user.name)
    public = login.public() if login is not None else None
    windows = None
    if login is not None and login.account_id:
        windows = await store.get_plan_windows(f"account:{login.account_id}")
    return {**user.public(), "login": public, "plan_windows": plan_windows(windows),
            "spend": await budget_spend(store, user, parse_budgets(user.budgets))}


async def budget_spend(store: TeamStore, user: User | None, budgets: tuple[Budget, ...],
                       now: float | None = None) -> list[dict[str, Any]]:
    """Per budget, what was spent in its current period and what is left, from the usage figures
    (per UTC day; they reach the store within seconds). ``user`` None: every user's (the team's); a
    user: that person's own (never an earlier person's of the same name)."""
    if not budgets:
        return []
    now = time.time() if now is None else now
    starts = {budget.name: _period_start(budget, now) for budget in budgets}
    since = min(starts.values())
    rows = await (store.usage(since=since) if user is None else person_usage(store, user, since=since))
    out = []
    for budget in budgets:
        spent = sum(row.cost_micros for row in rows if row.day >= starts[budget.name]
                    and (budget.provider is None or row.provider == budget.provider))
        _, left_seconds = budget.window(now)
        out.append({"budget": budget.name, "describe": budget.describe(), "budget_usd": dollars(budget.micros),
                    "spent_usd": dollars(spent), "left_usd": dollars(max(budget.micros - spent, 0)),
                    "spent_percent": round(100 * spent / budget.micros, 1) if budget.micros else 100.0,
                    "resets_at": None if budget.period.startswith("rolling:") else int(now + left_seconds)})
    return out


def _period_start(budget: Budget, now: float) -> str:
    """The first UTC day of the budget's current period (a rolling window: the day it reaches back to)."""
    _, left = budget.window(now)
    if budget.period.startswith("rolling:"):
        return time.strftime("%Y-%m-%d", time.gmtime(now - float(budget.period[8:])))
    if budget.period == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(now))
    if budget.period == "week":
        return time.strftime("%Y-%m-%d", time.gmtime(now + left - 7 * 86400))
    return time.strftime("%Y-%m-01", time.gmtime(now))


def plan_windows(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stored plan windows as a list of ``{name, used_percent, resets_at, window_minutes}``, from either
    ``{"primary": {"used_percent": …}}`` or the flat ``{"primary_used_percent": …}`` the headers give."""
    if not isinstance(data, dict):
        return []
    names: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            names.setdefault(key, {}).update(value)
            continue
        for suffix in ("used_percent", "reset_at", "resets_at", "reset_after_seconds", "window_minutes"):
            if key.endswith("_" + suffix):
                names.setdefault(key[: -len(suffix) - 1], {})[suffix] = value
    windows = []
    for name, fields in names.items():
        used = fields.get("used_percent")
        if isinstance(used, (int, float)) and not isinstance(used, bool):
            windows.append({"name": name, "used_percent": float(used),
                            "resets_at": fields.get("resets_at", fields.get("reset_at")),
                            "window_minutes": fields.get("window_minutes")})
    return windows


