"""Reasoning efforts clamped to what a model's catalogue entry lists (pure).

Clients send efforts a model may not take: the Agents SDK's default ``none``, Claude Code's ``max``,
an older client's ``minimal``. The backend refuses an effort the model does not list, so the
request is sent with the nearest listed level instead, by the rank the Codex CLI itself uses
(``nearest_effort`` in codex-rs openai_models.rs), ties going to the lower level. A custom string
passes only where the entry lists it; otherwise it is dropped (the model's default applies).
"""

from __future__ import annotations

from typing import Any

LEVELS = ("none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra")
RANK = {level: rank for rank, level in enumerate(LEVELS)}
# When nothing is known about a model: what the Codex models of 2026 commonly take.
DEFAULT_LEVELS = ("low", "medium", "high", "xhigh")


def supported_levels(entry: Any) -> list[str] | None:
    """The efforts a catalogue entry lists (``supported_reasoning_levels[].effort``), or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("supported_reasoning_levels"), list):
        return None
    levels = [level.get("effort") for level in entry["supported_reasoning_levels"] if isinstance(level, dict)]
    return [level for level in levels if isinstance(level, str) and level] or None


def clamp_effort(effort: str, supported: list[str] | tuple[str, ...] | None) -> str | None:
    """``effort`` if listed, else the nearest listed level (ties: the lower one); None to drop it."""
    if not supported or effort in supported:
        return effort
    rank = RANK.get(effort)
    ranked = [level for level in supported if level in RANK]
    if rank is None or not ranked:
        return None
    return min(ranked, key=lambda level: (abs(RANK[level] - rank), RANK[level]))
