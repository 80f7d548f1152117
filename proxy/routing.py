"""Model name → (provider, upstream model): a table, not an if-chain.

A provider pairs an adapter (the wire format) with a credential source (who signs). Explicit names
``provider/model`` always go to that provider; bare names are matched against an ordered list of
glob rules (``gpt-5*`` → codex, …) that later adapters and the config file extend.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .credentials.base import CredentialSource
from .errors import ModelNotFound


@dataclass(slots=True)
class Provider:
    name: str
    adapter: Any  # adapters.base.Adapter (kept loose to avoid an import cycle)
    credentials: CredentialSource


@dataclass(slots=True, frozen=True)
class RouteRule:
    """Bare model names matching ``pattern`` (a glob) go to ``provider``."""

    pattern: str
    provider: str


@dataclass(slots=True, frozen=True)
class Route:
    provider: Provider
    upstream_model: str

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


class Router:
    def __init__(self, providers: list[Provider], rules: list[RouteRule]) -> None:
        self.providers = {provider.name: provider for provider in providers}
        self.rules = [rule for rule in rules if rule.provider in self.providers]

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises :class:`ModelNotFound` (404) when none exists."""
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in self.providers:
            return Route(self.providers[prefix], rest)
        for rule in self.rules:
            if fnmatchcase(model, rule.pattern):
                return Route(self.providers[rule.provider], model)
        raise ModelNotFound(
            f"The model '{model}' does not exist or no configured provider serves it. "
            f"Use GET /v1/models to list the available models, or name a provider explicitly "
            f"({', '.join(p + '/<model>' for p in self.providers) or 'none configured'}).",
            param="model",
        )

    def models(self) -> list[dict[str, Any]]:
        """The ``/v1/models`` entries: every model the providers list."""
        listed: list[dict[str, Any]] = []
        seen: set[str] = set()
        for provider in self.providers.values():
            for info in provider.adapter.models():
                if info.id not in seen:
                    seen.add(info.id)
                    listed.append({"id": info.id, "object": "model", "created": 0, "owned_by": info.owned_by})
        return listed
