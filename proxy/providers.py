"""Assembling the providers (adapter + credential source) and routing rules from the settings."""

from __future__ import annotations

from adapters.codex import CodexAdapter

from .config import Settings
from .credentials.codex import CodexCredentialSource
from .routing import Provider, Router, RouteRule

DEFAULT_RULES = [RouteRule("gpt-5*", "codex"), RouteRule("*codex*", "codex")]


def build_router(settings: Settings) -> Router:
    codex = Provider(
        name="codex",
        adapter=CodexAdapter(settings.codex_base_url, settings.default_instructions),
        credentials=CodexCredentialSource(settings.codex_auth_path, token_url=settings.codex_token_url),
    )
    return Router([codex], DEFAULT_RULES)
