"""The optional ``subrelay.toml``: providers, aliases, routes and fallback chains.

Parsed with the stdlib ``tomllib`` and checked completely before the server starts: any unknown
key, wrong type or dangling reference stops start-up with a message naming the exact key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from proxy.config.identity import IdentityConfig, parse_identity
from proxy.errors import ConfigError
from proxy.money.budgets import Budget, parse_budgets
from proxy.money.prices import PriceError, PriceTable, default_table

PROVIDER_KINDS = ("codex", "openai", "openrouter", "xai", "groq", "perplexity", "gemini", "anthropic", "custom")
_TOP_KEYS = {"default_instructions", "providers", "aliases", "routes", "fallbacks", "fallback_at_percent", "prices",
             "budgets", "money", "webhooks", "ladder", "fairness", "identity"}
_MONEY_KEYS = {"soft_percent"}
_WEBHOOK_KEYS = {"url", "secret_env", "events", "timeout", "attempts"}
_PROVIDER_KEYS = {"kind", "base_url", "api_key", "api_key_env", "headers", "models", "auth_path",
                  "merge_consecutive_roles", "max_concurrent"}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] | None = None
    auth_path: str | None = None
    merge_consecutive_roles: bool | None = None
    max_concurrent: int | None = None  # team mode: streams the deployment's members may hold open on it


@dataclass(frozen=True, slots=True)
class RouteConfig:
    pattern: str
    provider: str


@dataclass(frozen=True, slots=True)
class FileConfig:
    path: str = ""
    default_instructions: str | None = None
    providers: tuple[ProviderConfig, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Team mode: a user who allows it moves to the fallback once a plan window is this full.
    fallback_at_percent: float = 95.0
    # Money (team mode): the price table with [prices] on top, the deployment's budgets, soft thresholds.
    prices: PriceTable = field(default_factory=default_table)
    budgets: tuple[Budget, ...] = ()
    soft_percent: tuple[int, ...] = (80,)
    webhooks: tuple["WebhookConfig", ...] = ()
    # Team mode's degradation ladder: (at %, effort or None, model or None), lowest first.
    ladder: tuple[tuple[float, str | None, str | None], ...] = ()
    # When a concurrency cap is full: wait up to this many seconds for a slot (0: refuse at once).
    queue_seconds: float = 0.0
    identity: IdentityConfig = field(default_factory=IdentityConfig)  # sign-in, admins, sealing ([identity])


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where alerts go: ``url`` (http or https), signed with the secret in ``secret_env``."""

    url: str
    secret_env: str
    events: tuple[str, ...] = ()  # empty: every event
    timeout: float = 5.0
    attempts: int = 5


def load_config_file(path: str) -> FileConfig:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the config file does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: str = "subrelay.toml") -> FileConfig:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {problem}")

    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")

    instructions = data.get("default_instructions")
    if instructions is not None and (not isinstance(instructions, str) or not instructions.strip()):
        raise fail("default_instructions", "must be a non-empty string")

    providers = []
    raw_providers = data.get("providers", {})
    if not isinstance(raw_providers, dict):
        raise fail("providers", "must be a table of [providers.<name>] sections")
    for name, spec in raw_providers.items():
        providers.append(_provider(name, spec, fail))

    aliases = _string_table(data.get("aliases", {}), "aliases", fail)
    for alias, target in aliases.items():
        if "/" in alias:
            raise fail(f"aliases.{alias}", "an alias cannot contain '/' (that is how providers are named)")

    routes = []
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise fail("routes", "must be an array of tables: [[routes]] prefix = \"llama-*\" provider = \"local\"")
    for index, route in enumerate(raw_routes):
        where = f"routes[{index}]"
        if not isinstance(route, dict) or set(route) - {"prefix", "pattern", "provider"}:
            raise fail(where, "needs exactly 'prefix' (or 'pattern') and 'provider'")
        pattern = route.get("pattern") or route.get("prefix")
        if not isinstance(pattern, str) or not pattern:
            raise fail(f"{where}.prefix", "must be a non-empty string")
        if "pattern" not in route and not pattern.endswith("*"):
            pattern += "*"
        provider = route.get("provider")
        if not isinstance(provider, str) or not provider:
            raise fail(f"{where}.provider", "must name a provider")
        routes.append(RouteConfig(pattern, provider))

    fallbacks: dict[str, tuple[str, ...]] = {}
    raw_fallbacks = data.get("fallbacks", {})
    if not isinstance(raw_fallbacks, dict):
        raise fail("fallbacks", 'must be a table: "codex/gpt-5.4" = ["codex/gpt-5.4-mini", …]')
    for model, chain in raw_fallbacks.items():
        if not isinstance(chain, list) or not chain or not all(isinstance(m, str) and m for m in chain):
            raise fail(f"fallbacks.{model}", "must be a non-empty array of model names")
        fallbacks[model] = tuple(chain)

    at_percent = data.get("fallback_at_percent", 95.0)
    if isinstance(at_percent, bool) or not isinstance(at_percent, (int, float)) or not 0 < at_percent <= 100:
        raise fail("fallback_at_percent", "must be a number above 0 and at most 100")

    _check_names({p.name for p in providers}, aliases, routes, fallbacks, fail)
    prices, budgets, soft = _money(data, path, fail)
    webhooks = _webhooks(data.get("webhooks"), fail)
    return FileConfig(path, instructions.strip() if instructions else None, tuple(providers), aliases,
                      tuple(routes), fallbacks, float(at_percent), prices, budgets, soft, webhooks,
                      _ladder(data.get("ladder"), fail), _fairness(data.get("fairness"), fail),
                      parse_identity(data["identity"], fail) if "identity" in data else IdentityConfig())


def _fairness(value: Any, fail) -> float:
    """``[fairness] when_full = "refuse"`` (default) or ``"queue"`` with ``queue_seconds`` (default 10)."""
    if value is None:
        return 0.0
    if not isinstance(value, dict) or set(value) - {"when_full", "queue_seconds"}:
        raise fail("fairness", 'must be a table with when_full = "refuse" | "queue" and queue_seconds')
    mode = value.get("when_full", "refuse")
    if mode not in ("refuse", "queue"):
        raise fail("fairness.when_full", 'must be "refuse" or "queue"')
    seconds = value.get("queue_seconds", 10)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 300:
        raise fail("fairness.queue_seconds", "must be a number of seconds above 0 and at most 300")
    return float(seconds) if mode == "queue" else 0.0


_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _ladder(value: Any, fail) -> tuple[tuple[float, str | None, str | None], ...]:
    """``[ladder] steps = [{at = 70, effort = "low"}, {at = 85, model = "gpt-5.4-mini"}]``."""
    if value is None:
        return ()
    if not isinstance(value, dict) or set(value) - {"steps"} or not isinstance(value.get("steps"), list):
        raise fail("ladder", 'must be a table with steps = [{at = 70, effort = "low"}, {at = 85, model = "…"}]')
    steps = []
    for index, step in enumerate(value["steps"]):
        where = f"ladder.steps[{index}]"
        if not isinstance(step, dict) or set(step) - {"at", "effort", "model"} or not ({"effort", "model"} & set(step)):
            raise fail(where, "needs 'at' (percent) and an 'effort' and/or a 'model'")
        at = step.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 < at <= 100:
            raise fail(f"{where}.at", "must be a percentage above 0 and at most 100")
        effort, model = step.get("effort"), step.get("model")
        if effort is not None and effort not in _EFFORTS:
            raise fail(f"{where}.effort", f"must be one of {', '.join(_EFFORTS)}")
        if model is not None and (not isinstance(model, str) or not model or "/" in model):
            raise fail(f"{where}.model", "must be a model name on the same login (no provider prefix)")
        steps.append((float(at), effort, model))
    return tuple(sorted(steps))


def _money(data: dict[str, Any], path: str, fail) -> tuple[PriceTable, tuple[Budget, ...], tuple[int, ...]]:
    raw_prices = data.get("prices", {})
    if not isinstance(raw_prices, dict):
        raise fail("prices", 'must be a table: [prices."provider/model"] input = 2.50 output = 15.00')
    try:
        prices = default_table().with_overrides(raw_prices, path) if raw_prices else default_table()
        budgets = parse_budgets(data.get("budgets"), "budgets")
    except PriceError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    money = data.get("money", {})
    if not isinstance(money, dict) or set(money) - _MONEY_KEYS:
        raise fail("money", f"must be a table with {', '.join(sorted(_MONEY_KEYS))}")
    soft = money.get("soft_percent", [80])
    if not isinstance(soft, list) or len(soft) > 8 or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 100 for p in soft):
        raise fail("money.soft_percent", "must be a list of whole percentages between 1 and 99, such as [50, 80]")
    return prices, budgets, tuple(sorted(set(soft)))


def _webhooks(value: Any, fail) -> tuple[WebhookConfig, ...]:
    if value is None:
        return ()
    entries = value if isinstance(value, list) else [value]
    hooks = []
    for index, spec in enumerate(entries):
        where = f"webhooks[{index}]" if isinstance(value, list) else "webhooks"
        if not isinstance(spec, dict) or set(spec) - _WEBHOOK_KEYS:
            raise fail(where, f"must be a table with {', '.join(sorted(_WEBHOOK_KEYS))}")
        url = spec.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
            raise fail(f"{where}.url", "must be an http:// or https:// URL")
        secret_env = spec.get("secret_env")
        if not isinstance(secret_env, str) or not secret_env:
            raise fail(f"{where}.secret_env", "must name the environment variable that holds the signing secret")
        events = spec.get("events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise fail(f"{where}.events", "must be a list of event names (empty: every event)")
        timeout = spec.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
            raise fail(f"{where}.timeout", "must be a number of seconds between 0 and 60")
        attempts = spec.get("attempts", 5)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise fail(f"{where}.attempts", "must be a whole number between 1 and 20")
        hooks.append(WebhookConfig(url, secret_env, tuple(events), float(timeout), attempts))
    return tuple(hooks)


BUILTIN_PROVIDERS = tuple(kind for kind in PROVIDER_KINDS if kind != "custom")


def _check_names(defined: set[str], aliases: dict[str, str], routes: list[RouteConfig],
                 fallbacks: dict[str, tuple[str, ...]], fail) -> None:
    """Every provider the file names is one it defines or a built-in one: a typo (``nosuch/...``, a
    route to a ``[providers.local]`` that is missing) stops start-up naming the key, instead of a
    config that half-works. A defined provider that merely lacks a key is the inventory's warning."""
    known = defined | set(BUILTIN_PROVIDERS)

    def undefined(name: str) -> str:
        return (f"names the provider '{name}', which no [providers.{name}] section defines "
                f"(built in: {', '.join(BUILTIN_PROVIDERS)})")

    for index, route in enumerate(routes):
        if route.provider not in known:
            raise fail(f"routes[{index}].provider", undefined(route.provider))

    def check_model(key: str, model: str) -> None:
        prefix, sep, rest = model.partition("/")
        if not sep or prefix in known:
            return
        if any(fnmatchcase(model, route.pattern) for route in routes):
            return  # a bare name with a slash that one of the [[routes]] sends somewhere
        raise fail(key, f"'{model}' {undefined(prefix)}")

    for alias, target in aliases.items():
        check_model(f"aliases.{alias}", target)
    for model, chain in fallbacks.items():
        check_model(f"fallbacks.{model}", model)
        for name in chain:
            check_model(f"fallbacks.{model}", name)


def _provider(name: str, spec: Any, fail) -> ProviderConfig:
    where = f"providers.{name}"
    if "/" in name or not name:
        raise fail(where, "a provider name cannot be empty or contain '/'")
    if not isinstance(spec, dict):
        raise fail(where, "must be a table")
    unknown = set(spec) - _PROVIDER_KEYS
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", f"unknown key (expected {', '.join(sorted(_PROVIDER_KEYS))})")
    kind = spec.get("kind", name if name in PROVIDER_KINDS else None)
    if kind is None:
        raise fail(f"{where}.kind", f"is missing: say which kind of provider '{name}' is, e.g. kind = \"custom\" "
                                    f"for an OpenAI-compatible server (one of {', '.join(PROVIDER_KINDS)})")
    if kind not in PROVIDER_KINDS:
        raise fail(f"{where}.kind", f"must be one of {', '.join(PROVIDER_KINDS)} (got {kind!r})")
    for key in ("base_url", "api_key", "api_key_env", "auth_path"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise fail(f"{where}.{key}", "must be a non-empty string")
    if kind == "custom" and not spec.get("base_url"):
        raise fail(f"{where}.base_url", "is required for kind 'custom'")
    base_url = spec.get("base_url")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise fail(f"{where}.base_url", "must start with http:// or https://")
    if "api_key" in spec and "api_key_env" in spec:
        raise fail(where, "give either api_key or api_key_env, not both")
    models = spec.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise fail(f"{where}.models", "must be an array of model names")
    merge = spec.get("merge_consecutive_roles")
    if merge is not None and not isinstance(merge, bool):
        raise fail(f"{where}.merge_consecutive_roles", "must be true or false")
    cap = spec.get("max_concurrent")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100_000):
        raise fail(f"{where}.max_concurrent", "must be a whole number of at least 1")
    return ProviderConfig(
        name=name, kind=kind, base_url=base_url, api_key=spec.get("api_key"), api_key_env=spec.get("api_key_env"),
        headers=_string_table(spec.get("headers", {}), f"{where}.headers", fail),
        models=tuple(models) if models is not None else None, auth_path=spec.get("auth_path"),
        merge_consecutive_roles=merge, max_concurrent=cap,
    )


def _string_table(value: Any, where: str, fail) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        raise fail(where, "must be a table of string values")
    return dict(value)
