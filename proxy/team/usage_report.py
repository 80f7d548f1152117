"""Usage reports for the admin API, ``subrelay usage`` and the admin page: the query's checks and the
grouping, in one place so the command line and the API accept the same input and add up the same way."""

from __future__ import annotations

import datetime
from typing import Any

from proxy.errors import BadRequest
from proxy.money.prices import dollars
from proxy.state.team import USAGE_FIELDS, TeamStore, UsageRow
from proxy.team.keys import valid_name
from proxy.team.usage import person_usage, shown_names

GROUP_KEYS = ("user", "day", "model", "provider")


def check_day(field: str, value: Any) -> str | None:
    """A day as the store keeps it (``YYYY-MM-DD``, UTC), or None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) == 10:
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise BadRequest(f"'{field}' must be a date as YYYY-MM-DD (UTC).", param=field, code="invalid_date")


def check_user(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not valid_name(value):
        raise BadRequest("'user' must be a user name (lowercase letters, digits, '.', '_' or '-').", param="user",
                         code="invalid_name")
    return value


def check_group_by(value: Any) -> tuple[str, ...]:
    """``group_by``: a comma list of user, day, model, provider (default: all four, one row per key)."""
    if value is None or value == "":
        return GROUP_KEYS
    parts = [part.strip() for part in value.split(",")] if isinstance(value, str) else None
    if not parts or any(part not in GROUP_KEYS for part in parts) or len(set(parts)) != len(parts):
        raise BadRequest(f"'group_by' must be a comma list of {', '.join(GROUP_KEYS)} (each at most once).",
                         param="group_by", code="invalid_group_by")
    return tuple(key for key in GROUP_KEYS if key in parts)  # a stable order whatever the query's


async def usage_report(store: TeamStore | None, *, user: Any = None, since: Any = None, until: Any = None,
                       group_by: Any = None) -> dict[str, Any]:
    """The usage rows for the query, summed over every key not in ``group_by``, and their totals."""
    user, since, until = check_user(user), check_day("since", since), check_day("until", until)
    keys = check_group_by(group_by)
    if since and until and since > until:
        raise BadRequest("'since' must not be after 'until'.", param="since", code="invalid_date")
    rows = await _rows(store, user, since, until) if store is not None else []
    return {"object": "list", "group_by": list(keys), "since": since, "until": until,
            "data": group_rows(rows, keys), "totals": _sums(rows)}


async def _rows(store: TeamStore, name: str | None, since: str | None, until: str | None) -> list[UsageRow]:
    """Usage rows named as the admin knows them: one user's own (never a removed person's of the same
    name), or everyone's with removed people's rows under ``<name> (removed)``."""
    if name is not None:
        user = await store.get_user(name)
        return shown_names(await person_usage(store, user, since=since, until=until), [user]) if user else []
    return shown_names(await store.usage(since=since, until=until), await store.list_users())


def group_rows(rows: list[UsageRow], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    groups: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        group = tuple(getattr(row, key) for key in keys)
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = {**dict(zip(keys, group)), **{name: 0 for name in USAGE_FIELDS}}
        for name in USAGE_FIELDS:
            entry[name] += getattr(row, name)
    for entry in groups.values():
        entry["cost_usd"] = dollars(entry["cost_micros"])
    return [groups[group] for group in sorted(groups)]


def _sums(rows: list[UsageRow]) -> dict[str, Any]:
    sums: dict[str, Any] = {name: sum(getattr(row, name) for row in rows) for name in USAGE_FIELDS}
    sums["cost_usd"] = dollars(sums["cost_micros"])  # money: micro-dollars exactly, and dollars to read
    return sums


def usage_table(report: dict[str, Any]) -> str:
    """The report as a plain text table (``subrelay usage``)."""
    keys = report["group_by"]
    heads = [*keys, "requests", "errors", "input", "cached", "output", "reasoning", "cost_usd", "unpriced"]
    counts = [name for name in USAGE_FIELDS if name not in ("cost_micros", "unpriced")]

    def cells(entry: dict[str, Any]) -> list[str]:
        return [f"{entry[name]:,}" for name in counts] + [entry["cost_usd"], f"{entry['unpriced']:,}"]

    body = [[str(entry[key]) for key in keys] + cells(entry) for entry in report["data"]]
    totals = report["totals"]
    if body:
        body.append(["total", *[""] * (len(keys) - 1)] + cells(totals))
    widths = [max(len(row[i]) for row in [heads, *body]) for i in range(len(heads))]
    numeric = range(len(keys), len(heads))
    lines = ["  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                       for i, cell in enumerate(row)).rstrip() for row in [heads, *body]]
    return "\n".join(lines)
