"""Model name → an ordered list of routes (the target, then its fallbacks): a table, not an if-chain.

A provider pairs an adapter (the wire format) with a credential source (who signs). ``provider/model``
always goes to that provider; a bare name resolves through the aliases, then an ordered list of glob
rules (``gpt-5*`` → codex, …). Only providers that are usable right now are in the router, so a rule
for a missing provider simply does not match and the next one does.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from proxy.credentials.base import Credential, CredentialSource
from proxy.errors import AuthenticationFailed, ModelNotFound


@dataclass(slots=True)
class Provider:
    name: str
    adapter: Any  # adapters.base.Adapter (kept loose to avoid an import cycle)
    credentials: CredentialSource
    kind: str = ""  # the config's kind (codex, openai, anthropic, custom…): where the price table looks

    def problem(self) -> str | None:
        """Why this provider cannot serve right now (None when it can). A login that appears,
        disappears or breaks while the server runs is followed here, request by request."""
        check = getattr(self.credentials, "problem", None)
        return check() if check is not None else None


@dataclass(slots=True, frozen=True)
class RouteRule:
    """Bare model names matching ``pattern`` (a glob) go to ``provider``."""

    pattern: str
    provider: str
    from_config: bool = False  # the user's [[routes]]: checked before any provider's own catalogue


@dataclass(slots=True, frozen=True)
class Route:
    provider: Provider
    upstream_model: str

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


class Router:
    def __init__(
        self,
        providers: list[Provider],
        rules: list[RouteRule],
        aliases: dict[str, str] | None = None,
        fallbacks: dict[str, tuple[str, ...]] | None = None,
        unavailable: dict[str, str] | None = None,
    ) -> None:
        self.providers = {provider.name: provider for provider in providers}
        self.rules = [rule for rule in rules if rule.provider in self.providers]
        self._all_rules = list(rules)
        # Providers left out by the inventory, with why: named in errors so a user knows what to fix.
        self.unavailable = dict(unavailable or {})
        self.aliases = dict(aliases or {})
        self.fallbacks = dict(fallbacks or {})
        # /v1/models' `created`: when this router learnt its models (clients sort and cache by it; 0 reads as 1970).
        self.listed_at = int(time.time())

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises :class:`ModelNotFound` (404) when none exists."""
        target = self.aliases.get(model, model)
        route = self._lookup(target)
        if route is None:
            named = f"The model '{model}'" + (f" (an alias of '{target}')" if target != model else "")
            missing = self._unavailable_provider_for(target)
            if missing is not None:
                raise AuthenticationFailed(
                    f"{named} is served by {missing}, which is unavailable: "
                    f"{self._why_unavailable(missing).rstrip('.')}.",
                    code="provider_unavailable",
                )
            raise ModelNotFound(
                f"{named} does not exist or no available provider serves it. "
                f"Use GET /v1/models to list the available models, or name a provider explicitly "
                f"({', '.join(p + '/<model>' for p in self.providers) or 'none configured'}).",
                param="model",
            )
        return route

    def _unavailable_provider_for(self, model: str) -> str | None:
        prefix, sep, _ = model.partition("/")
        if sep and (prefix in self.unavailable or prefix in self.providers):
            return prefix
        for rule in self._all_rules:
            if (rule.provider in self.unavailable or rule.provider in self.providers) and fnmatchcase(model, rule.pattern):
                return rule.provider
        return None

    def _why_unavailable(self, name: str) -> str:
        provider = self.providers.get(name)
        problem = provider.problem() if provider is not None else None
        return problem or self.unavailable.get(name, "not configured")

    def routable(self, model: str) -> bool:
        return self._lookup(self.aliases.get(model, model)) is not None

    def candidates(self, model: str) -> list[Route]:
        """The route for ``model`` followed by its fallback chain (unroutable entries skipped)."""
        primary = self.resolve(model)
        chain = self.fallbacks.get(model) or self.fallbacks.get(self.aliases.get(model, "")) or self.fallbacks.get(
            primary.label, ()
        )
        routes = [primary]
        for name in chain:
            route = self._lookup(self.aliases.get(name, name))
            if route is not None and route.label not in {r.label for r in routes}:
                routes.append(route)
        return routes

    def _lookup(self, model: str) -> Route | None:
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in self.providers:
            provider = self.providers[prefix]
            return Route(provider, rest) if provider.problem() is None else None
        claimed = False
        for rule in self.rules:
            if not rule.from_config and not claimed:
                claimed = True
                for provider in self.providers.values():  # a live catalogue that lists the name claims it
                    claims = getattr(provider.adapter, "claims", None)
                    if claims is not None and claims(model) and provider.problem() is None:
                        return Route(provider, model)
            if fnmatchcase(model, rule.pattern):
                provider = self.providers[rule.provider]
                if provider.problem() is None:
                    return Route(provider, model)
        return None

    def models(self) -> list[dict[str, Any]]:
        """The ``/v1/models`` entries: what is routable right now, under the name that routes it."""
        listed: list[dict[str, Any]] = []
        seen: set[str] = set()

        def add(model_id: str, owner: str) -> None:
            if model_id not in seen:
                seen.add(model_id)
                listed.append({"id": model_id, "object": "model", "created": self.listed_at, "owned_by": owner})

        for provider in self.providers.values():
            if provider.problem() is not None:
                continue
            for info in provider.adapter.models():
                bare = self._lookup(info.id)
                add(info.id if bare is not None and bare.provider is provider else f"{provider.name}/{info.id}",
                    provider.name)
        for alias, target in self.aliases.items():
            route = self._lookup(target)
            if route is not None:
                add(alias, route.provider.name)
        return listed


def credential_identity(credential: Credential) -> str:
    """Who is limited: the account when the credential names one, else a hash of the secret
    (never the secret itself). A login to another account therefore starts with no cooldowns."""
    if credential.account_id:
        return f"account:{credential.account_id}"
    return "key:" + hashlib.sha256(credential.access_token.encode()).hexdigest()[:16]
