"""Codex personal access tokens (``at-…``): a ChatGPT workspace's token for automation, without a refresh token.

What subrelay relies on, confirmed in openai/codex (``codex-rs/login/src/auth/personal_access_token.rs`` at
1e253161298656cd877257c342c66aede39a5f35, ``storage.rs`` at 06566159f5193a7d99e751296bd1540c2b845443) and by
running the Codex CLI 0.171.0 against a local whoami:
- a token starting with ``at-`` is a personal access token (Codex takes anything else for an agent-identity JWT);
- ``codex login --with-access-token`` reads it from stdin and writes ``auth.json`` as exactly
  ``{"OPENAI_API_KEY": null, "personal_access_token": "at-…"}``: no account, no refresh token, no expiry;
- the account is asked of ``GET {auth}/api/accounts/v1/user-auth-credential/whoami`` with the token as bearer,
  answering ``{email (may be null), chatgpt_user_id, chatgpt_account_id, chatgpt_plan_type,
  chatgpt_account_is_fedramp}``; Codex asks on every start and then signs backend requests with
  ``Authorization: Bearer at-…`` and ``chatgpt-account-id``;
- nothing can renew it: a 401 means it was revoked or expired, and only a new token helps.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson

from proxy.credentials.base import Credential
from proxy.errors import AuthenticationFailed, BadRequest, UpstreamFailure, UpstreamTimeout
from proxy.observe.redact import get_logger, secrets

log = get_logger("subrelay.credentials.access_token")

PREFIX = "at-"
DEFAULT_AUTH_BASE_URL = "https://auth.openai.com"  # whoami lives under its /api/accounts (CODEX_AUTHAPI_BASE_URL)
WHOAMI_PATH = "/api/accounts/v1/user-auth-credential/whoami"
FIELD = "personal_access_token"  # where auth.json keeps it (the Codex CLI's name)
ACCOUNT_FIELD = "personal_access_token_account"  # subrelay's copy of whoami, in sealed team logins only
MAX_LENGTH = 4096
try:
    _VERSION = metadata.version("subrelay")
except metadata.PackageNotFoundError:  # a source checkout that was never installed
    _VERSION = "0"
USER_AGENT = f"subrelay/{_VERSION} (+https://pypi.org/project/subrelay/)"  # named honestly, as upstream
RENEW_HINT = ("Create a new access token in ChatGPT and run `printenv CODEX_ACCESS_TOKEN | subrelay login "
              "--with-access-token` (or paste it on the account page).")


def member_hint(name: str) -> str:
    """How a team member replaces a refused access token."""
    return (f"Paste a new access token on the account page (with your subrelay key), or ask an admin to run "
            f"`printenv CODEX_ACCESS_TOKEN | subrelay login --with-access-token --user {name}`.")


@dataclass(frozen=True, slots=True)
class TokenAccount:
    """Who an access token belongs to, as whoami says (never the token)."""

    account_id: str
    user_id: str | None = None
    email: str | None = None
    plan_type: str | None = None
    fedramp: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TokenAccount | None:
        if not isinstance(data, dict) or not isinstance(data.get("account_id"), str):
            return None
        text = {name: data.get(name) if isinstance(data.get(name), str) else None for name in ("user_id", "email",
                                                                                                   "plan_type")}
        return cls(data["account_id"], fedramp=data.get("fedramp") is True, **text)


def is_access_token(token: object) -> bool:
    return isinstance(token, str) and token.startswith(PREFIX)


def checked_token(text: str) -> str:
    """The token a person supplied, stripped, or a clear error (never echoing it)."""
    token = text.strip()
    if not token:
        raise BadRequest("No access token was given.", param="access_token", code="missing_access_token")
    if not token.startswith(PREFIX):
        raise BadRequest(f"That is not a Codex personal access token (they start with '{PREFIX}'). For a ChatGPT "
                         "login use `subrelay login`.", param="access_token", code="invalid_access_token")
    if len(token) > MAX_LENGTH or not (token.isascii() and token.isprintable()) or " " in token:
        raise BadRequest("The access token has characters or a length no access token has.", param="access_token",
                         code="invalid_access_token")
    secrets.add(token)
    return token


def refused(who: str, login_hint: str = RENEW_HINT) -> AuthenticationFailed:
    """The backend (or whoami) refused an access token: revoked or expired, and not renewable."""
    return AuthenticationFailed(f"The Codex access token of {who} was refused: it was revoked or has expired, and "
                                f"access tokens cannot be refreshed. {login_hint}", code="access_token_revoked")


async def whoami(http: httpx.AsyncClient | None, auth_base_url: str, token: str, who: str = "this login") -> TokenAccount:
    """The account behind ``token`` (raises :func:`refused` for a token the auth server does not accept)."""
    secrets.add(token)
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(15.0))
    try:
        response = await client.get(auth_base_url.rstrip("/") + WHOAMI_PATH, timeout=15.0, headers={
            "Authorization": f"Bearer {token}", "originator": "subrelay", "User-Agent": USER_AGENT,
            "Accept": "application/json"})
    except httpx.TimeoutException:
        raise UpstreamTimeout("The ChatGPT auth server did not say whose access token this is in time.") from None
    except httpx.HTTPError as exc:
        raise UpstreamFailure(f"Could not reach the ChatGPT auth server to look up the access token "
                              f"({type(exc).__name__}).") from None
    finally:
        if client is not http:
            await client.aclose()
    if response.status_code in (401, 403):
        log.warning("the auth server refused the access token of %s (%s)", who, response.status_code)
        raise refused(who)
    try:
        data = orjson.loads(response.content) if response.status_code == 200 else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("chatgpt_account_id"), str) or \
            not data["chatgpt_account_id"].isascii() or not data["chatgpt_account_id"].isprintable():
        raise UpstreamFailure(f"The ChatGPT auth server answered HTTP {response.status_code} without an account for "
                              "the access token.", code="whoami_failed")
    return TokenAccount.from_dict({"account_id": data["chatgpt_account_id"], "user_id": data.get("chatgpt_user_id"),
                                   "email": data.get("email"), "plan_type": data.get("chatgpt_plan_type"),
                                   "fedramp": data.get("chatgpt_account_is_fedramp")})  # type: ignore[return-value]


def auth_json(token: str, account: TokenAccount | None = None) -> dict[str, Any]:
    """The login as ``auth.json`` holds it (Codex's shape), plus whoami's answer for a sealed team login."""
    data: dict[str, Any] = {"OPENAI_API_KEY": None, FIELD: token}
    if account is not None:
        data[ACCOUNT_FIELD] = account.to_dict()
    return data


def credential_from(data: dict[str, Any]) -> Credential | None:
    """The credential of an access-token login (None when ``data`` is not one). Its account is known only
    when ``data`` carries whoami's answer; :class:`TokenAccounts` fills it in otherwise."""
    token = data.get(FIELD)
    if not is_access_token(token) or isinstance(data.get("tokens"), dict) and data["tokens"].get("access_token"):
        return None
    checked_token(token)  # type: ignore[arg-type]
    account = TokenAccount.from_dict(data.get(ACCOUNT_FIELD))
    return Credential(access_token=token, account_id=account.account_id if account else None,  # type: ignore[arg-type]
                      plan_type=account.plan_type if account else None)


class TokenAccounts:
    """whoami's answers, asked once per token in this process (as Codex asks once per start)."""

    def __init__(self) -> None:
        self._known: dict[str, TokenAccount] = {}

    def get(self, token: str) -> TokenAccount | None:
        return self._known.get(_digest(token))

    def forget(self, token: str) -> None:
        self._known.pop(_digest(token), None)

    async def signed(self, credential: Credential, http: httpx.AsyncClient | None, auth_base_url: str,
                     who: str = "this login") -> Credential:
        """``credential`` with its account filled in from whoami (asked at most once per token)."""
        if credential.account_id is not None:
            return credential
        account = self.get(credential.access_token)
        if account is None:
            account = await whoami(http, auth_base_url, credential.access_token, who)
            if len(self._known) >= 1024:
                self._known.clear()
            self._known[_digest(credential.access_token)] = account
        return Credential(credential.access_token, account.account_id, account.plan_type)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
