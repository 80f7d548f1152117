"""The Codex backend's per-account model catalogue (``GET {base}/models?client_version=…``), read
purely: which slugs to list and route. Fact sheet responses.md §6."""

from __future__ import annotations

from typing import Any


def listed_slugs(payload: Any) -> list[str] | None:
    """The slugs a person should see (``visibility == "list"``), by the backend's priority; None
    when ``payload`` is not a catalogue."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return None
    entries = [entry for entry in payload["models"] if isinstance(entry, dict) and isinstance(entry.get("slug"), str)]
    visible = [entry for entry in entries if entry.get("visibility", "list") == "list"]
    visible.sort(key=lambda entry: entry["priority"] if isinstance(entry.get("priority"), (int, float)) else 1e9)
    return [entry["slug"] for entry in visible]


def routable_slugs(payload: Any) -> set[str]:
    """Every slug the account may use (hidden ones too: a client may still name them)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return set()
    return {entry["slug"] for entry in payload["models"] if isinstance(entry, dict) and isinstance(entry.get("slug"), str)}
