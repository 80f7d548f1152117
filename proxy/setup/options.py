"""What the user chose on the command line, shared by every client module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    model: str | None = None  # the main model; None: the README's choice if subrelay serves it
    small_model: str | None = None  # the fast one (Claude Code's Haiku slot, opencode's small_model)
