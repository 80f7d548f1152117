"""The degradation ladder: before a person's own plan runs out, step down in the order configured —
a lower reasoning effort, then a cheaper model on the same login — and finally (for people who opted
in to the quota-aware fallback) the team key, within its money budget. Each step is said to the client
(``x-subrelay-ladder``, ``x-subrelay-route``) and in the log; the ladder climbs back as soon as the
window resets. Never another person's login.

A step applies once the plan's *pressure* reaches its ``at``: the fuller of the two windows, or where
the window is heading at its current burn rate (used % ÷ the share of the window elapsed, once a tenth
of it has passed), whichever is higher. The team-key rung (``fallback_at_percent``) looks at the used %
only: money is spent on the real state of the plan, not on a forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WINDOWS = ("primary", "secondary")
MIN_ELAPSED_SHARE = 0.1  # before a tenth of the window has passed, a burn rate says little


@dataclass(frozen=True, slots=True)
class Step:
    """From ``at`` % pressure on: at most ``effort``, and/or ``model`` instead of the one asked for."""

    at: float
    effort: str | None = None
    model: str | None = None

    def describe(self) -> str:
        return ", ".join(part for part in (f"effort {self.effort}" if self.effort else "",
                                           f"model {self.model}" if self.model else "") if part)


def forecast(entry: dict[str, Any], now: float) -> float | None:
    """Where a window's used % is heading by its reset at the current burn rate (None: too early to say)."""
    used, reset_at, minutes = entry.get("used_percent"), entry.get("reset_at"), entry.get("window_minutes")
    if not isinstance(used, (int, float)) or not reset_at or not minutes:
        return None
    length = float(minutes) * 60
    elapsed = length - (float(reset_at) - now)
    if length <= 0 or elapsed < MIN_ELAPSED_SHARE * length or elapsed > length:
        return None
    return float(used) * length / elapsed


def pressure(windows: dict[str, Any] | None, now: float) -> tuple[float, str]:
    """The plan's pressure (0-100+) and why, from the windows its last answer reported."""
    best, why = 0.0, ""
    for name in WINDOWS:
        entry = (windows or {}).get(name)
        if not isinstance(entry, dict):
            continue
        reset_at = entry.get("reset_at")
        if reset_at is not None and reset_at <= now:
            continue  # reset since: that window is empty again
        used = float(entry.get("used_percent") or 0)
        if used > best:
            best, why = used, f"{name} window {used:g}% used"
        heading = forecast(entry, now)
        if heading is not None and heading > best:
            best, why = heading, f"{name} window {used:g}% used, heading for {heading:.0f}% by its reset"
    return best, why


def rung(steps: tuple[Step, ...], windows: dict[str, Any] | None, now: float) -> tuple[str | None, str | None, int, str]:
    """(the effort to cap at, the model to use, how many steps apply, why) for the plan's state now."""
    level, why = pressure(windows, now)
    effort = model = None
    applied = 0
    for step in sorted(steps, key=lambda s: s.at):
        if level < step.at:
            break
        applied += 1
        effort = step.effort or effort
        model = step.model or model
    return effort, model, applied, why
