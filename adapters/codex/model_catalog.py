"""The Codex backend's per-account model catalogue (``GET {base}/models?client_version=…``), read
purely: which slugs to list and route. Fact sheet responses.md §6."""

from __future__ import annotations

from typing import Any

from .effort import supported_levels

_DESCRIPTIONS = {"none": "No reasoning", "minimal": "Minimal reasoning", "low": "Fast responses with lighter reasoning",
                 "medium": "Balanced speed and reasoning depth", "high": "Deeper reasoning for complex problems",
                 "xhigh": "Extra deep reasoning", "max": "Maximum reasoning", "ultra": "Longest reasoning"}


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


def effort_levels(payload: Any) -> dict[str, list[str]]:
    """slug → the efforts its entry lists (entries without a list are left out)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return {}
    levels = {}
    for entry in payload["models"]:
        found = supported_levels(entry)
        if found and isinstance(entry.get("slug"), str):
            levels[entry["slug"]] = found
    return levels


def cli_entry(slug: str, priority: int, efforts: list[str], default_effort: str | None) -> dict[str, Any]:
    """The fields the Codex CLI requires of a ``ModelInfo`` (every one without a serde default, plus
    the useful defaulted ones), under a backend entry. ``base_instructions`` is empty: the prompt
    comes from the backend's ``model_messages``, so this alone is not an entry to list."""
    return {
        "slug": slug, "display_name": slug, "description": f"{slug} through subrelay",
        "default_reasoning_level": default_effort if default_effort in efforts else (efforts[0] if efforts else None),
        "supported_reasoning_levels": [{"effort": e, "description": _DESCRIPTIONS.get(e, e)} for e in efforts],
        "shell_type": "shell_command", "visibility": "list", "supported_in_api": True, "priority": priority,
        "availability_nux": None, "upgrade": None, "base_instructions": "", "model_messages": None,
        "support_verbosity": True, "default_verbosity": "low", "apply_patch_tool_type": "freeform",
        "truncation_policy": {"mode": "tokens", "limit": 10000}, "supports_parallel_tool_calls": True,
        "experimental_supported_tools": [], "context_window": 272000, "max_context_window": 272000,
        "input_modalities": ["text", "image"], "supports_reasoning_summary_parameter": True,
        "default_reasoning_summary": "none", "web_search_tool_type": "text", "service_tiers": [],
        "additional_speed_tiers": [], "prefer_websockets": False,
    }


def has_prompt(entry: dict[str, Any]) -> bool:
    """Whether an entry carries the agent prompt Codex sends as its first developer message
    (``model_messages.instructions_template``, else ``base_instructions``). Codex 0.171 refuses a
    list whose entry has neither, and sends no prompt at all for ``base_instructions: ""``."""
    messages = entry.get("model_messages")
    template = messages.get("instructions_template") if isinstance(messages, dict) else None
    if isinstance(template, str) and template.strip():
        return True
    base = entry.get("base_instructions")
    return isinstance(base, str) and bool(base.strip())


def complete_catalog(payload: dict[str, Any]) -> dict[str, Any]:
    """The backend's catalogue with any field the Codex CLI requires filled in (the backend's own
    values kept), so one incomplete entry never makes the CLI drop the whole list. An entry without
    a prompt is left out: Codex then runs that model on its own defaults (and its own prompt)
    instead of on no prompt."""
    models = []
    for index, entry in enumerate(payload.get("models") or ()):
        if not isinstance(entry, dict) or not isinstance(entry.get("slug"), str) or not has_prompt(entry):
            continue
        efforts = supported_levels(entry) or ["low", "medium", "high", "xhigh"]
        base = cli_entry(entry["slug"], index, efforts, entry.get("default_reasoning_level"))
        models.append({**base, **entry})
    return {**payload, "models": models}
