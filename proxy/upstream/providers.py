"""Assembling providers from settings, with a fail-closed credential inventory.

Every provider subrelay knows (the Codex login, the API-key presets, the config file's entries) is
checked once at start-up: a login file must parse to real tokens, an API key must look real. Only
providers that pass join the router; each one that was configured but failed gets one clear warning
here instead of a 401 on every request. ``subrelay status`` prints the same inventory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from adapters.anthropic import AnthropicAdapter
from adapters.codex import CodexAdapter
from adapters.openai_compat import OpenAICompatAdapter, presets
from proxy.config.file import ProviderConfig
from proxy.config.settings import Settings
from proxy.credentials.api_keys import ApiKeySource, key_problem
from proxy.credentials.codex import CodexCredentialSource
from proxy.errors import ProxyError
from proxy.invocation import command
from proxy.observe.redact import get_logger
from proxy.upstream.routing import Provider, Router, RouteRule

log = get_logger("subrelay.providers")

# Bare-name routing, in order; a rule whose provider is unavailable is skipped, so gpt-5* falls to
# openai when there is no Codex login.
DEFAULT_RULES = [
    RouteRule("gpt-5*", "codex"), RouteRule("gpt-6*", "codex"), RouteRule("*codex*", "codex"),
    RouteRule("gpt-5*", "openai"), RouteRule("gpt-6*", "openai"), RouteRule("*codex*", "openai"), RouteRule("gpt-4*", "openai"),
    RouteRule("gpt-3.5*", "openai"), RouteRule("o1*", "openai"), RouteRule("o3*", "openai"),
    RouteRule("o4*", "openai"), RouteRule("chatgpt-*", "openai"),
    RouteRule("gemini-*", "gemini"), RouteRule("grok-*", "xai"), RouteRule("claude-*", "anthropic"),
    RouteRule("sonar*", "perplexity"),
    # The plain endpoints' models (docs/endpoints.md): embeddings, moderation, speech to text, images.
    RouteRule("text-embedding-*", "openai"), RouteRule("*moderation*", "openai"), RouteRule("whisper-1", "openai"),
    RouteRule("dall-e-*", "openai"), RouteRule("gpt-image-*", "openai"), RouteRule("whisper-large-*", "groq"),
    RouteRule("distil-whisper-*", "groq"), RouteRule("imagen-*", "gemini"), RouteRule("text-embedding-*", "gemini"),
]


NOT_CHECKED = "looks valid, not checked"  # an API key's format passed; only a request shows the vendor accepts it


@dataclass(slots=True)
class ProviderStatus:
    """One row of the inventory (never holds a secret)."""

    name: str
    source: str
    state: str  # "ok" | "not configured" | "unavailable"
    detail: str = ""
    expiry: str = "-"
    configured: bool = False  # the user tried to set it up (so a failure deserves a warning)


@dataclass(slots=True)
class Inventory:
    providers: list[Provider]
    statuses: list[ProviderStatus]


def build_inventory(settings: Settings) -> Inventory:
    configs = {p.name: p for p in settings.file.providers}
    providers: list[Provider] = []
    statuses: list[ProviderStatus] = []
    builtin = ("codex", *presets(), "anthropic")
    names = [*builtin, *(n for n in configs if n not in builtin)]
    for name in names:
        config = configs.get(name)
        kind = config.kind if config else name
        if kind == "codex":
            provider, status = _codex(name, config, settings)
        elif kind == "anthropic":
            provider, status = _anthropic(name, config, settings)
        else:
            provider, status = _openai_compatible(name, kind, config, settings)
        statuses.append(status)
        if provider is not None:
            providers.append(provider)
    return Inventory(providers, statuses)


def build_router(settings: Settings, inventory: Inventory | None = None) -> Router:
    """The router over the usable providers; logs one warning per configured-but-unusable one."""
    inventory = inventory or build_inventory(settings)
    for status in inventory.statuses:
        if status.state == "unavailable" and status.configured:
            log.warning("provider %s is unavailable and left out of routing: %s", status.name, status.detail)
    if not any(status.state == "ok" for status in inventory.statuses):
        log.warning("no provider is usable yet: run `%s`, or set an API key such as OPENAI_API_KEY or "
                    "ANTHROPIC_API_KEY; `%s` shows what was found", command("login"), command("status"))
    rules = [RouteRule(r.pattern, r.provider, from_config=True) for r in settings.file.routes] + DEFAULT_RULES
    unavailable = {s.name: s.detail for s in inventory.statuses if s.state != "ok" and s.detail}
    router = Router(inventory.providers, rules, unavailable=unavailable)
    for route in settings.file.routes:
        if route.provider not in router.providers:
            log.warning("route %s -> %s unused for now: provider %s is unavailable (%s)", route.pattern,
                        route.provider, route.provider, unavailable.get(route.provider) or "not configured")
    # Every name the config uses is defined (parse_config checked it); a provider that is merely
    # unusable now keeps its aliases and fallbacks, so a request names the real problem, and a login
    # made later makes them work without a restart.
    router.aliases.update(settings.file.aliases)
    for alias, target in settings.file.aliases.items():
        if not router.routable(target):
            log.warning("alias %s -> %s cannot be served for now: %s", alias, target, _why_not(router, target))
    for model, chain in settings.file.fallbacks.items():
        router.fallbacks[model] = tuple(chain)
        for name in chain:
            if not router.routable(name):
                log.warning("fallback %s for %s cannot be served for now: %s", name, model, _why_not(router, name))
    return router


def _why_not(router: Router, model: str) -> str:
    try:
        router.resolve(model)
    except ProxyError as exc:
        return exc.message
    return "unavailable"


def _codex(name: str, config: ProviderConfig | None, settings: Settings) -> tuple[Provider | None, ProviderStatus]:
    """The Codex provider is always built: its login file is followed while the server runs, so a
    login made (or removed, or broken) after start-up takes effect without a restart."""
    path = os.path.expanduser(config.auth_path) if config and config.auth_path else settings.codex_auth_path
    status = ProviderStatus(name, path, "ok", configured=config is not None or os.path.exists(path))
    adapter = CodexAdapter(config.base_url if config and config.base_url else settings.codex_base_url,
                           settings.default_instructions)
    source = CodexCredentialSource(path, token_url=settings.codex_token_url, auth_base_url=settings.auth_base_url)
    provider = Provider(name, adapter, source, "codex")
    if not os.path.exists(path):
        status.state, status.detail = "not configured", f"no login file; run `{command('login')}` (or `codex login`)"
        return provider, status
    problem = source.problem()
    if problem is not None:
        status.state, status.detail = "unavailable", problem
        return provider, status
    credential = source.load()
    if credential.access_token.startswith("at-"):  # a Codex personal access token: nothing renews it
        status.expiry = "Codex access token (not refreshed: a revoked one is refused with how to log in again)"
        return provider, status
    expiry = credential.expires_at
    if expiry is not None:
        # The access token lives about an hour and is renewed from the refresh token: its expiry is
        # not the login's end (which nobody can see; a refused refresh says so when it happens).
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expiry))
        status.expiry = (f"access token renews itself (next {when})" if expiry >= time.time()
                         else f"access token expired {when}; renewed on first use")
    return provider, status


def _openai_compatible(
    name: str, kind: str, config: ProviderConfig | None, settings: Settings
) -> tuple[Provider | None, ProviderStatus]:
    preset = presets().get(kind, {})
    key_env = (config.api_key_env if config else None) or preset.get("key_env")
    if config and config.api_key:
        key, origin = config.api_key, f"{settings.file.path or 'config'} providers.{name}.api_key"
    elif key_env:
        key, origin = settings.env.get(key_env), f"env {key_env}"
    else:
        key, origin = None, "no key"
    status = ProviderStatus(name, origin, "ok", configured=config is not None or bool(key))
    if not status.configured:
        status.state, status.detail = "not configured", f"set {key_env}" if key_env else ""
        return None, status
    vendor = None if kind == "custom" else kind
    problem = key_problem(key, vendor) if (key or vendor) else None
    if problem is not None:
        status.state, status.detail = "unavailable", f"the key in {origin} {problem}"
        return None, status
    base_url = (config.base_url if config and config.base_url else None) or preset.get("base_url")
    headers = {**preset.get("headers", {}), **(config.headers if config else {})}
    models = list(config.models) if config and config.models is not None else preset.get("models", [])
    merge = config.merge_consecutive_roles if config and config.merge_consecutive_roles is not None else bool(
        preset.get("merge_consecutive_roles"))
    adapter = OpenAICompatAdapter(name, base_url, models=models, headers=headers, merge_consecutive_roles=merge,
                                  key_origin=origin, endpoints=preset.get("endpoints"))
    if key:
        status.detail = NOT_CHECKED
    return Provider(name, adapter, ApiKeySource(name, key, origin), kind), status


def _anthropic(name: str, config: ProviderConfig | None, settings: Settings) -> tuple[Provider | None, ProviderStatus]:
    key_env = (config.api_key_env if config else None) or "ANTHROPIC_API_KEY"
    if config and config.api_key:
        key, origin = config.api_key, f"{settings.file.path or 'config'} providers.{name}.api_key"
    else:
        key, origin = settings.env.get(key_env), f"env {key_env}"
    status = ProviderStatus(name, origin, "ok", configured=config is not None or bool(key))
    if not key:
        claude_login = _claude_code_login(settings)
        status.state = "unavailable" if claude_login else "not configured"
        status.detail = (
            f"a Claude Code login exists ({claude_login}), but Anthropic's terms reserve it for Claude Code, so "
            f"subrelay does not use it; create an API key at console.anthropic.com and set {key_env}"
            if claude_login else f"set {key_env} (an API key from console.anthropic.com)"
        )
        status.configured = status.configured or bool(claude_login)
        return None, status
    problem = key_problem(key, "anthropic")
    if problem is not None:
        status.state, status.detail = "unavailable", f"the key in {origin} {problem}"
        return None, status
    base_url = (config.base_url if config and config.base_url else None) or settings.anthropic_base_url
    adapter = AnthropicAdapter(name, base_url, key_origin=origin)
    status.detail = NOT_CHECKED
    return Provider(name, adapter, ApiKeySource(name, key, origin), "anthropic"), status


def _claude_code_login(settings: Settings) -> str | None:
    """The path of Claude Code's credential file, if one exists (only to explain why it is unused)."""
    directory = settings.env.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")
    path = os.path.join(directory, ".credentials.json")
    return path if os.path.exists(path) else None
