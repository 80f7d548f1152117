"""Budgets in money: how much may be spent per period, written ``"<period>[@<provider>]" = <dollars>``.

Periods are calendar ones in UTC (``day``, ``week`` from Monday, ``month``), which reset at their end,
or a rolling window (``rolling:<n><s|m|h|d>``, e.g. ``rolling:7d``), where each request's spend drops
out ``n`` after it was made. ``@<provider>`` limits the budget to one provider (a team key); without it
the budget counts every paid route. A budget becomes one more limit rule in the admission, so it is
reserved and settled in the same atomic step as the token limits (:mod:`proxy.team.policy`).
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import Any

from proxy.money.prices import PriceError, dollars, to_micros

PERIODS = ("day", "week", "month")
_ROLLING = re.compile(r"rolling:([1-9][0-9]{0,6})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BUDGETS = 16
_PERIODS: dict[str, tuple[float, str, float]] = {}  # period -> (valid from, its key, its end), the current one


class BudgetError(PriceError):
    """A budget that cannot be understood (its period, provider or amount)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """``micros`` micro-dollars per ``period``, on ``provider`` only (None: on every paid route)."""

    period: str  # "day" | "week" | "month" | "rolling:<seconds>"
    micros: int
    provider: str | None = None

    @property
    def name(self) -> str:
        """The budget as written: ``month``, ``day@team``, ``rolling:3600``."""
        return self.period + (f"@{self.provider}" if self.provider else "")

    def window(self, now: float) -> tuple[str, float]:
        """(the key of the period ``now`` is in, the seconds until that period ends); a calendar period is
        worked out once and kept until it ends (this runs on every budgeted request)."""
        if self.period.startswith("rolling:"):
            return self.period, float(self.period[8:])
        known = _PERIODS.get(self.period)
        if known is not None and known[0] <= now < known[2]:
            return known[1], known[2] - now
        key, left = self._calendar(now)
        _PERIODS[self.period] = (now - (86400.0 - left if self.period == "day" else 0.0), key, now + left)
        return key, left

    def _calendar(self, now: float) -> tuple[str, float]:
        day = time.gmtime(now)
        if self.period == "day":
            return time.strftime("%Y-%m-%d", day), 86400.0 - now % 86400
        if self.period == "week":  # ISO week, Monday 00:00 UTC
            start = now - now % 86400 - day.tm_wday * 86400
            return time.strftime("%G-W%V", day), start + 7 * 86400 - now
        next_month = calendar.timegm((day.tm_year + day.tm_mon // 12, day.tm_mon % 12 + 1, 1, 0, 0, 0))
        return time.strftime("%Y-%m", day), next_month - now

    def describe(self) -> str:
        """``$20.00 a month on team``: what people read in refusals and listings."""
        if self.period.startswith("rolling:"):
            span = _span(int(self.period[8:]))
            text = f"${dollars(self.micros)} per rolling {span}"
        else:
            text = f"${dollars(self.micros)} a {self.period}"
        return text + (f" on {self.provider}" if self.provider else "")


def parse_period(text: Any) -> str:
    """``day``/``week``/``month`` or ``rolling:<n><unit>`` (normalised to seconds)."""
    if text in PERIODS:
        return text
    match = _ROLLING.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise BudgetError(f"a budget's period is day, week, month or rolling:<n><s|m|h|d> such as rolling:7d "
                          f"(got {str(text)[:40]!r})")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not 60 <= seconds <= 366 * 86400:
        raise BudgetError("a rolling budget's window is between one minute and a year")
    return f"rolling:{seconds}"


def parse_budget(name: Any, amount: Any, where: str = "budgets") -> Budget:
    """One ``"<period>[@<provider>]" = <dollars>`` entry."""
    if not isinstance(name, str):
        raise BudgetError(f"{where}: a budget is named '<period>[@<provider>]', such as 'month' or 'day@team'")
    period, at, provider = name.partition("@")
    if at and not _PROVIDER.fullmatch(provider):
        raise BudgetError(f"{where}.{name[:60]}: '@' is followed by a provider's name")
    try:
        micros = to_micros(amount, f"{where}.{name[:60]}")
    except BudgetError:
        raise
    except PriceError as exc:
        raise BudgetError(str(exc)) from None
    try:
        parsed = parse_period(period)
    except BudgetError as exc:
        raise BudgetError(f"{where}.{name[:60]}: {exc}") from None
    return Budget(parsed, micros, provider or None)


def parse_budgets(value: Any, where: str = "budgets") -> tuple[Budget, ...]:
    """A table of budgets (``{"month": 20, "day@team": "5.00"}``); None or {} is no budget."""
    if value is None:
        return ()
    if not isinstance(value, dict) or len(value) > MAX_BUDGETS:
        raise BudgetError(f"{where} must be a table of up to {MAX_BUDGETS} budgets such as "
                          "{\"month\": 20, \"day@team\": 5} (dollars)")
    budgets = tuple(parse_budget(name, amount, where) for name, amount in value.items() if amount is not None)
    names = [b.name for b in budgets]
    if len(set(names)) != len(names):
        raise BudgetError(f"{where}: the same budget is named twice")
    return budgets


def budgets_table(budgets: tuple[Budget, ...]) -> dict[str, str]:
    """Budgets as stored and shown: ``{"month": "20.00"}`` (dollars as exact decimal strings)."""
    return {budget.name: dollars(budget.micros) for budget in budgets}


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
