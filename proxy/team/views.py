"""What an admin sees of a user, in the admin API, the admin page and ``subrelay users show``: the record
without its key hash, their login's public part (account, email, plan; never a token) and that login's
plan windows."""

from __future__ import annotations

from typing import Any

from proxy.state.team import TeamStore, User


async def user_view(store: TeamStore, user: User) -> dict[str, Any]:
    """What an admin may see of a user: the record without its key hash, the login's public part
    (account, email, plan; never a token) and that login's plan windows."""
    login = await store.get_login(user.name)
    public = login.public() if login is not None else None
    windows = None
    if login is not None and login.account_id:
        windows = await store.get_plan_windows(f"account:{login.account_id}")
    return {**user.public(), "login": public, "plan_windows": plan_windows(windows)}


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


