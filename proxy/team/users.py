"""Managing people: add, change, disable, rotate a key, remove. One place for the rules, used by the
``subrelay users`` command and the admin API alike, so both refuse the same bad input the same way."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from proxy.errors import BadRequest, NotFound
from proxy.hub.checks import REASONING_EFFORTS
from proxy.money.budgets import BudgetError, budgets_table, parse_budgets
from proxy.state.team import TeamStore, User, UserExists
from proxy.team.keys import hash_key, new_key, valid_name

LIMIT_FIELDS = ("rpm", "tpm", "daily_tokens", "max_concurrent")
_MAX_LIMIT = 10**12
_MAX_PATTERNS = 64


def check_name(name: Any) -> str:
    if not valid_name(name):
        raise BadRequest("'name' must be 1-63 characters: lowercase letters, digits, '.', '_' or '-', starting "
                         "with a letter or digit.", param="name", code="invalid_name")
    return name


def check_limit(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_LIMIT:
        raise BadRequest(f"'{field}' must be a positive integer (or null for no limit).", param=field,
                         code="invalid_limit")
    return value


def check_models(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or len(value) > _MAX_PATTERNS or not all(
            isinstance(item, str) and 0 < len(item) <= 200 and item.isprintable() and " " not in item for item in value):
        raise BadRequest(f"'models' must be a list of up to {_MAX_PATTERNS} model names or glob patterns.",
                         param="models", code="invalid_models")
    return tuple(value)


def check_model_limits(value: Any) -> dict[str, dict[str, int]]:
    """``{"gpt-5.5*": {"rpm": 10, "tpm": 100000}, …}``: limits for some models only (the first matching glob)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > _MAX_PATTERNS:
        raise BadRequest(f"'model_limits' must be an object of up to {_MAX_PATTERNS} model globs, each with "
                         "rpm, tpm and/or daily_tokens.", param="model_limits", code="invalid_model_limits")
    checked: dict[str, dict[str, int]] = {}
    for pattern, limits in value.items():
        check_models([pattern])
        if not isinstance(limits, dict) or not limits or set(limits) - set(LIMIT_FIELDS):
            raise BadRequest(f"'model_limits.{pattern[:60]}' must name rpm, tpm and/or daily_tokens.",
                             param="model_limits", code="invalid_model_limits")
        checked[pattern] = {field: check_limit(f"model_limits.{field}", number) for field, number in limits.items()
                            if number is not None}
    return checked


def check_budgets(value: Any, current: dict[str, str] | None = None) -> dict[str, str]:
    """``{"month": 20, "day@team": "5.00", "week": null}``: dollars per period (null removes one), merged
    over ``current``; kept as exact decimal strings (``"20.00"``), never floats."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("'budgets' must be an object such as {\"month\": 20, \"day@team\": 5} (dollars; "
                         "null removes one).", param="budgets", code="invalid_budget")
    merged = {**(current or {}), **value}
    try:
        return budgets_table(parse_budgets({k: v for k, v in merged.items() if v is not None}))
    except BudgetError as exc:
        raise BadRequest(f"'budgets': {exc}.", param="budgets", code="invalid_budget") from None


def check_effort(value: Any) -> str | None:
    if value is None or value in REASONING_EFFORTS:
        return value
    raise BadRequest(f"'max_effort' must be one of {', '.join(REASONING_EFFORTS)} (or null for no ceiling).",
                     param="max_effort", code="invalid_effort")


def check_flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"'{field}' must be true or false.", param=field, code="invalid_type")
    return value


async def add_user(store: TeamStore, name: Any, *, models: Any = None, rpm: Any = None, tpm: Any = None,
                   daily_tokens: Any = None, fallback: Any = False, model_limits: Any = None, budgets: Any = None,
                   max_effort: Any = None, max_concurrent: Any = None) -> tuple[User, str]:
    """A new user and their key (the only time the key exists outside the client)."""
    key = new_key()
    digest = hash_key(key)
    user = User(name=check_name(name), key_hash=digest, key_id=digest[:12], models=check_models(models),
                rpm=check_limit("rpm", rpm), tpm=check_limit("tpm", tpm),
                daily_tokens=check_limit("daily_tokens", daily_tokens), fallback=check_flag("fallback", fallback),
                created_at=time.time(), model_limits=check_model_limits(model_limits),
                budgets=check_budgets(budgets), max_effort=check_effort(max_effort),
                max_concurrent=check_limit("max_concurrent", max_concurrent))
    try:
        await store.add_user(user)
    except UserExists:
        raise BadRequest(f"A user named {name!r} exists already.", param="name", code="user_exists") from None
    return user, key


async def get_user(store: TeamStore, name: Any) -> User:
    user = await store.get_user(name) if valid_name(name) else None
    if user is None:
        raise NotFound(f"No user named {str(name)[:64]!r}.", code="user_not_found")
    return user


async def change_user(store: TeamStore, name: Any, changes: dict[str, Any]) -> User:
    """Apply ``changes`` (disabled, models, rpm, tpm, daily_tokens, fallback, model_limits, budgets,
    max_effort); unknown fields are a 400. ``budgets`` merges: ``{"week": null}`` removes only that one,
    ``{}`` or null removes every budget."""
    user = await get_user(store, name)
    allowed = {"disabled", "models", "fallback", "model_limits", "budgets", "max_effort", *LIMIT_FIELDS}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field {unknown[0]!r}; fields: {', '.join(sorted(allowed))}.", param=unknown[0],
                         code="unknown_parameter")
    values: dict[str, Any] = {}
    for field, value in changes.items():
        if field in LIMIT_FIELDS:
            values[field] = check_limit(field, value)
        elif field == "models":
            values[field] = check_models(value)
        elif field == "model_limits":
            values[field] = check_model_limits(value)
        elif field == "budgets":
            values[field] = check_budgets(value, user.budgets) if value else {}
        elif field == "max_effort":
            values[field] = check_effort(value)
        else:
            values[field] = check_flag(field, value)
    updated = replace(user, **values, generation=user.generation + 1)
    await store.save_user(updated)
    return updated


async def rotate_key(store: TeamStore, name: Any) -> tuple[User, str]:
    user = await get_user(store, name)
    key = new_key()
    digest = hash_key(key)
    updated = replace(user, key_hash=digest, key_id=digest[:12], generation=user.generation + 1)
    await store.save_user(updated)
    return updated, key


async def remove_user(store: TeamStore, name: Any) -> None:
    if not (valid_name(name) and await store.remove_user(name)):
        raise NotFound(f"No user named {str(name)[:64]!r}.", code="user_not_found")
    # What identity kept for them goes too: their own keys, sign-in sessions and the links that made a
    # person sign in as them (so a name added again later is nobody's until linked anew).
    for kind, owner in (("member_key", name), ("session", f"user:{name}"), ("person", name)):
        await store.delete_records_of(kind, owner)
    await store.delete_record("person_of", name)
