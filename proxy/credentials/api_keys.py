"""API keys: a fail-closed plausibility check, and the credential source that serves one.

A key that is empty, a template, a placeholder, mis-pasted (quotes, ``Bearer ``, ``NAME=``) or
another vendor's key is caught at start-up with a message saying what is wrong, instead of surfacing
as a 401 on every request. The check never makes a network call and never prints the key.
"""

from __future__ import annotations

import re

from proxy.credentials.base import Credential
from proxy.errors import AuthenticationFailed
from proxy.observe.redact import secrets

MIN_KEY_LENGTH = 24

# Most specific first: sk-ant- and sk-or- also start with sk-.
VENDOR_PREFIXES: tuple[tuple[str, str], ...] = (
    ("sk-ant-", "anthropic"),
    ("sk-or-", "openrouter"),
    ("sk-", "openai"),
    ("xai-", "xai"),
    ("gsk_", "groq"),
    ("pplx-", "perplexity"),
    ("AIza", "gemini"),
    # GitHub: fine-grained PAT, classic PAT, Actions/App installation, OAuth and user-to-server tokens.
    ("github_pat_", "github"),
    ("ghp_", "github"),
    ("ghs_", "github"),
    ("gho_", "github"),
    ("ghu_", "github"),
)
VENDOR_NAMES = {
    "anthropic": "Anthropic", "openrouter": "OpenRouter", "openai": "OpenAI", "xai": "xAI", "groq": "Groq",
    "perplexity": "Perplexity", "gemini": "Google Gemini", "github": "GitHub",
}
_PLACEHOLDER = re.compile(
    r"placeholder|dummy|fake|example|not[-_]?used|changeme|change[-_]me|replace|insert|todo|your[-_]|YOUR_|xxx|\.\.\.|[<>]",
    re.IGNORECASE,
)
_ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*\s*=")


def key_problem(value: str | None, vendor: str | None) -> str | None:
    """Why ``value`` cannot be a real key for ``vendor`` (None when it looks real).

    ``vendor`` None means a custom endpoint: only the paste-mistake rules apply there.
    """
    if value is None or not value.strip():
        return "not set"
    if value.strip().lower().startswith("bearer"):  # before the whitespace rule: "Bearer sk-…" is this slip
        return "starts with 'Bearer'; give the key alone"
    if value != value.strip() or any(ch.isspace() for ch in value):
        return "contains whitespace or a line break (a copy-paste slip?)"
    if value[0] in "\"'`" or value[-1] in "\"'`":
        return "is wrapped in quotes; remove them"
    if _ASSIGNMENT.match(value):
        return "contains 'NAME=' — paste only the value"
    if vendor is None:
        return None
    if _PLACEHOLDER.search(value) or len(set(value.split("-")[-1])) <= 2:
        return "looks like a placeholder, not a real key"
    if len(value) < MIN_KEY_LENGTH:
        return f"is too short to be a real key ({len(value)} characters)"
    detected = vendor_of(value)
    expected_prefix = next((prefix for prefix, name in VENDOR_PREFIXES if name == vendor), None)
    if detected is not None and detected != vendor and expected_prefix is not None:
        detected_prefix = next(prefix for prefix, name in VENDOR_PREFIXES if name == detected)
        return (f"looks like {_a(VENDOR_NAMES[detected])} key ({detected_prefix}…), not "
                f"{_a(VENDOR_NAMES.get(vendor, vendor))} key")
    if expected_prefix is not None and detected != vendor:
        prefixes = "', '".join(prefix for prefix, name in VENDOR_PREFIXES if name == vendor)
        return f"{VENDOR_NAMES.get(vendor, vendor)} keys start with '{prefixes}'"
    return None


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def vendor_of(value: str) -> str | None:
    for prefix, vendor in VENDOR_PREFIXES:
        if value.startswith(prefix):
            return vendor
    return None


class ApiKeySource:
    """A static key. It cannot be refreshed: a 401 means the key itself is wrong or revoked."""

    can_refresh = False

    def __init__(self, name: str, key: str | None, origin: str) -> None:
        self.name = name
        self.origin = origin  # where the key came from, for messages ("env OPENAI_API_KEY")
        self._credential = Credential(access_token=key) if key else None
        secrets.add(key)

    @property
    def has_key(self) -> bool:
        return self._credential is not None

    async def current(self) -> Credential:
        if self._credential is None:
            return Credential(access_token="")
        return self._credential

    async def refresh(self, *, stale: Credential | None = None) -> Credential:
        raise AuthenticationFailed(f"The {self.name} API key from {self.origin} was rejected.")
