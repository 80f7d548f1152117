"""Writing, describing and removing the login in the Codex CLI's ``auth.json`` format, so the Codex
CLI and subrelay share one login. Writes are atomic and 0600 and keep every field subrelay does not
own; a damaged file is never overwritten."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import proxy.credentials.access_token as access_token
from proxy.credentials.files import (
    CredentialFileError,
    atomic_write_json,
    read_json_object,
)
from proxy.credentials.jwt import jwt_claims
from proxy.errors import ProxyError
from proxy.observe.redact import secrets

_AUTH_CLAIM = "https://api.openai.com/auth"


@dataclass(slots=True)
class Account:
    """Who is logged in, from the tokens' claims (never a token)."""

    email: str | None
    plan: str | None
    account_id: str | None
    expires_at: float | None
    login: str = "chatgpt"  # or "access_token" (a Codex personal access token: no refresh, no expiry shown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(tokens: dict[str, Any]) -> Account:
    access = jwt_claims(tokens.get("access_token"))
    identity = jwt_claims(tokens.get("id_token"))
    auth = access.get(_AUTH_CLAIM) or identity.get(_AUTH_CLAIM) or {}
    auth = auth if isinstance(auth, dict) else {}
    account = tokens.get("account_id") or auth.get("chatgpt_account_id")
    email = identity.get("email") or access.get("email")
    exp = access.get("exp")
    return Account(email if isinstance(email, str) else None,
                   auth.get("chatgpt_plan_type") if isinstance(auth.get("chatgpt_plan_type"), str) else None,
                   account if isinstance(account, str) else None,
                   float(exp) if isinstance(exp, (int, float)) else None)


def current_account(path: str) -> Account | None:
    try:
        data = read_json_object(path)
    except CredentialFileError:
        return None
    tokens = data.get("tokens")
    if isinstance(tokens, dict) and tokens.get("access_token"):
        return describe(tokens)
    if access_token.is_access_token(data.get(access_token.FIELD)):
        return Account(None, None, None, None, login="access_token")  # whoami says who (on use)
    return None


class LoginFileDamaged(ProxyError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "credentials_corrupt"


def _existing(path: str) -> dict[str, Any]:
    """The login file now (empty when there is none); a damaged one is never overwritten."""
    try:
        return read_json_object(path)
    except CredentialFileError as exc:
        if exc.reason != "missing":
            raise LoginFileDamaged(f"{path} is {exc.reason} ({exc.detail}); subrelay will not overwrite it. Move it "
                                   "aside and log in again.") from None
        return {}


def save_login(path: str, tokens: dict[str, Any]) -> tuple[Account, Account | None]:
    """Write ``tokens`` as the login at ``path``; returns (the new account, the one it replaced)."""
    secrets.add(tokens.get("access_token"), tokens.get("refresh_token"), tokens.get("id_token"))
    existing = _existing(path)
    previous = current_account(path) if existing else None
    new_tokens = {**(existing.get("tokens") if isinstance(existing.get("tokens"), dict) else {})}
    for name in ("id_token", "access_token", "refresh_token"):
        if isinstance(tokens.get(name), str) and tokens[name]:
            new_tokens[name] = tokens[name]
    account = describe(tokens)
    if account.account_id:
        new_tokens["account_id"] = account.account_id
    data = {**existing, "OPENAI_API_KEY": existing.get("OPENAI_API_KEY"), "tokens": new_tokens,
            "last_refresh": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    atomic_write_json(path, data)
    return account, previous


# What a ChatGPT login keeps that an access-token login must not (Codex would not know which to use).
_CHATGPT_FIELDS = ("tokens", "last_refresh", "auth_mode", "agent_identity", access_token.ACCOUNT_FIELD)


def save_access_token(path: str, token: str) -> Account | None:
    """Write ``token`` as the login at ``path`` in the Codex CLI's own shape for it (what
    ``codex login --with-access-token`` writes), keeping fields subrelay does not own; returns the
    login it replaced."""
    secrets.add(token)
    existing = _existing(path)
    previous = current_account(path) if existing else None
    data = {**{k: v for k, v in existing.items() if k not in _CHATGPT_FIELDS}, **access_token.auth_json(token)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    atomic_write_json(path, data)
    return previous


def remove_login(path: str) -> bool:
    """Delete the login file (True if there was one)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
