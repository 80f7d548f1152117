"""The ChatGPT login written by ``codex login`` (``~/.codex/auth.json``), and its refresh."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

import proxy.credentials.access_token as pat
from proxy.credentials.base import Credential
from proxy.credentials.files import (
    CachedJsonFile,
    CredentialFileError,
    atomic_write_json,
)
from proxy.credentials.jwt import jwt_claims, jwt_expiry
from proxy.credentials.locks import LockUnavailable, RefreshLock
from proxy.errors import (
    AuthenticationFailed,
    ProxyError,
    ServiceUnavailable,
    UpstreamFailure,
    UpstreamTimeout,
)
from proxy.observe.metrics import REFRESHES
from proxy.invocation import command
from proxy.observe.redact import get_logger, secrets

log = get_logger("subrelay.credentials.codex")

CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
_AUTH_CLAIM = "https://api.openai.com/auth"
_LOGIN_HINT = f"Run `{command('login')}` (or `codex login`)."
_DEAD_REFRESH_CODES = frozenset(
    {"refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated", "invalid_grant"}
)
# Without a readable `exp`, treat a token older than this as due for refresh (peers use ~55 min).
_MAX_AGE_WITHOUT_EXP = 55 * 60


class CodexCredentialSource:
    """Reads, caches and refreshes a Codex ``auth.json`` without ever corrupting or leaking it."""

    name = "codex"
    can_refresh = True

    def __init__(
        self,
        path: str,
        *,
        token_url: str,
        http: httpx.AsyncClient | None = None,
        skew_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        lock_timeout: float = 60.0,
        auth_base_url: str = pat.DEFAULT_AUTH_BASE_URL,
    ) -> None:
        self.path = path
        self.token_url = token_url
        self.http = http
        self.skew_seconds = skew_seconds
        self._clock = clock
        self._file = CachedJsonFile(path)
        self._lock = RefreshLock(path + ".lock", timeout=lock_timeout)
        self._memo: tuple[dict[str, Any], Credential | tuple[str, str | None]] | None = None
        self.auth_base_url = auth_base_url  # where an access token's account is asked (whoami)
        self.token_accounts = pat.TokenAccounts()

    # -- reading ---------------------------------------------------------------------------------

    def load(self) -> Credential:
        """The credential in the file now, without refreshing (raises AuthenticationFailed)."""
        return self._credential_from(self._read())

    def problem(self) -> str | None:
        """Why this login cannot be used right now (None when it can). Cheap: a ``stat`` while the
        file is unchanged, so routing can ask on every request and follow logins as they come and go."""
        try:
            self._credential_from(self._read())
        except AuthenticationFailed as exc:
            return exc.message
        return None

    async def current(self) -> Credential:
        data = self._read()
        credential = self._credential_from(data)
        if pat.is_access_token(credential.access_token):  # no expiry, no refresh: its account, once
            return await self.token_accounts.signed(credential, self.http, self.auth_base_url, self.path)
        if self._is_due(credential, data):
            return await self._refresh_unless_rotated(credential, force=False)
        return credential

    async def refresh(self, *, stale: Credential | None = None) -> Credential:
        if stale is not None and pat.is_access_token(stale.access_token):
            # Nothing renews an access token: a new one in the file (a new login) is used, else the 401 stands.
            self._file.invalidate()
            now = self._credential_from(self._read())
            if now.access_token != stale.access_token:
                return await self.current()
            self.token_accounts.forget(stale.access_token)
            raise pat.refused(self.path)
        seen = stale or self._credential_from(self._read())
        return await self._refresh_unless_rotated(seen, force=True)

    def _read(self) -> dict[str, Any]:
        try:
            return self._file.load()
        except CredentialFileError as exc:
            raise _file_error(exc) from None

    def _credential_from(self, data: dict[str, Any]) -> Credential:
        """The credential in ``data`` (memoised: the cached file returns the same object until it changes)."""
        memo = self._memo
        if memo is None or memo[0] is not data:
            try:
                result: Credential | tuple[str, str | None] = self._parse_credential(data)
            except AuthenticationFailed as exc:
                result = (exc.message, exc.code)
            memo = self._memo = (data, result)
        if isinstance(memo[1], tuple):
            raise AuthenticationFailed(memo[1][0], code=memo[1][1])  # a fresh one: no traceback piles up
        return memo[1]

    def _parse_credential(self, data: dict[str, Any]) -> Credential:
        return credential_from_auth(data, self.path)

    def _is_due(self, credential: Credential, data: dict[str, Any]) -> bool:
        now = self._clock()
        if credential.expires_at is not None:
            return credential.expires_at - self.skew_seconds <= now
        refreshed = _parse_timestamp(data.get("last_refresh"))
        return refreshed is not None and now - refreshed > _MAX_AGE_WITHOUT_EXP

    # -- refreshing ------------------------------------------------------------------------------

    async def _refresh_unless_rotated(self, seen: Credential, *, force: bool) -> Credential:
        try:
            return await self._refresh_under_lock(seen, force=force)
        except LockUnavailable as exc:
            if not force and seen.expires_at is not None and seen.expires_at > self._clock():
                # Due for refresh but still valid: keep serving, and say what to fix.
                log.warning("cannot refresh the ChatGPT login yet: lock file %s", exc)
                return seen
            raise ServiceUnavailable(
                f"The ChatGPT login needs a refresh, but its lock file {exc.path} is unusable: {exc.detail}. "
                "subrelay takes that lock so that only one program refreshes at a time.",
                code="credential_lock_unavailable") from None

    async def _refresh_under_lock(self, seen: Credential, *, force: bool) -> Credential:
        try:
            async with self._lock.hold():
                # Another task or process may have rotated the tokens while we waited: re-read.
                self._file.invalidate()
                data = self._read()
                credential = self._credential_from(data)
                if credential.access_token != seen.access_token:
                    return credential
                if not force and not self._is_due(credential, data):
                    return credential
                return await self._refresh_and_store(data)
        except TimeoutError:
            raise UpstreamTimeout(
                "Timed out waiting for another process to finish refreshing the ChatGPT login.",
                code="refresh_lock_timeout",
            ) from None

    async def _refresh_and_store(self, data: dict[str, Any]) -> Credential:
        refresh_token = data["tokens"].get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise AuthenticationFailed(
                f"The ChatGPT login in {self.path} has expired and has no refresh token. {_LOGIN_HINT}",
                code="token_expired",
            )
        fresh = await self._post_refresh(refresh_token)
        # The refresh took time: if the file changed meanwhile (`codex login` as another account, say),
        # it is newer than what we refreshed. Keep it, and use it.
        self._file.invalidate()
        now_on_disk = self._read()
        if now_on_disk != data:
            log.warning("the ChatGPT login in %s changed during a refresh; keeping the newer file", self.path)
            return self._credential_from(now_on_disk)
        updated = copy.deepcopy(data)
        tokens = updated["tokens"]
        tokens["access_token"] = fresh["access_token"]
        for field in ("id_token", "refresh_token"):
            if isinstance(fresh.get(field), str) and fresh[field]:
                tokens[field] = fresh[field]
        updated["last_refresh"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            atomic_write_json(self.path, updated)
        except OSError as exc:
            # The old refresh token is spent: keep the new tokens in memory rather than lose them.
            self._file.hold(updated)
            log.error("refreshed the ChatGPT login but could not save %s (%s); using the new tokens from "
                      "memory until the file changes. Fix the file or directory, or run `codex login`.",
                      self.path, exc.strerror)
        else:
            self._file.invalidate()
            log.info("refreshed the ChatGPT login in %s", self.path)
        REFRESHES.labels("ok").inc()
        return self._credential_from(updated)

    async def _post_refresh(self, refresh_token: str) -> dict[str, Any]:
        return await exchange_refresh_token(self.http, self.token_url, refresh_token)


def _header_safe(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isprintable() and " " not in value


def _well_formed(tokens: dict[str, Any]) -> bool:
    """Tokens of the right types, and header-safe where they travel in headers."""
    if not _header_safe(tokens.get("access_token")):
        return False
    if tokens.get("account_id") is not None and not _header_safe(tokens["account_id"]):
        return False
    return all(tokens.get(name) is None or isinstance(tokens[name], str) for name in ("refresh_token", "id_token"))


def _file_error(exc: CredentialFileError) -> AuthenticationFailed:
    if exc.reason == "missing":
        return AuthenticationFailed(f"No ChatGPT login found at {exc.path}. {_LOGIN_HINT}", code="credentials_missing")
    if exc.reason == "unreadable":
        return AuthenticationFailed(
            f"Cannot read the ChatGPT login at {exc.path} ({exc.detail}). Check its permissions.",
            code="credentials_unreadable",
        )
    return AuthenticationFailed(
        f"The ChatGPT login at {exc.path} is damaged ({exc.detail}); subrelay will not modify it. {_LOGIN_HINT}",
        code="credentials_corrupt",
    )


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(payload: dict[str, Any]) -> str | None:
    error = payload.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return code if isinstance(code, str) else None
    if isinstance(error, str):
        return error
    return None


def _parse_timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


__all__ = ["CodexCredentialSource", "CODEX_CLIENT_ID", "jwt_expiry"]


def credential_from_auth(data: dict[str, Any], where: str, login_hint: str = _LOGIN_HINT) -> Credential:
    """The credential in an ``auth.json``-shaped object (raises AuthenticationFailed naming ``where``):
    a ChatGPT login's tokens, or a Codex personal access token (:mod:`proxy.credentials.access_token`)."""
    try:
        personal = pat.credential_from(data)
    except ProxyError as exc:
        raise AuthenticationFailed(f"The access token at {where} is damaged ({exc.message}). {login_hint}",
                                   code="credentials_corrupt") from None
    if personal is not None:
        return personal
    tokens = data.get("tokens")
    if isinstance(tokens, dict) and tokens.get("access_token") and not _well_formed(tokens):
        raise AuthenticationFailed(
            f"The ChatGPT login at {where} is damaged (a token has the wrong type or characters); "
            f"subrelay will not modify it. {login_hint}", code="credentials_corrupt")
    if not isinstance(tokens, dict) or not isinstance(tokens.get("access_token"), str) or not tokens["access_token"]:
        if data.get("OPENAI_API_KEY"):
            raise AuthenticationFailed(
                f"{where} holds an OpenAI API key login, not a ChatGPT login. Run `codex login` and "
                "choose 'Sign in with ChatGPT', or use an openai/ model with OPENAI_API_KEY.",
                code="credentials_missing",
            )
        raise AuthenticationFailed(
            f"{where} has no ChatGPT tokens. {login_hint}", code="credentials_missing"
        )
    access_token = tokens["access_token"]
    secrets.add(access_token, tokens.get("refresh_token"), tokens.get("id_token"))
    access_claims = jwt_claims(access_token)
    auth_claims = access_claims.get(_AUTH_CLAIM) or jwt_claims(tokens.get("id_token")).get(_AUTH_CLAIM) or {}
    if not isinstance(auth_claims, dict):
        auth_claims = {}
    account_id = tokens.get("account_id") or auth_claims.get("chatgpt_account_id")
    exp = access_claims.get("exp")
    return Credential(
        access_token=access_token,
        account_id=account_id if isinstance(account_id, str) else None,
        plan_type=auth_claims.get("chatgpt_plan_type"),
        expires_at=float(exp) if isinstance(exp, (int, float)) else None,
    )


async def exchange_refresh_token(http: httpx.AsyncClient | None, token_url: str, refresh_token: str,
                                 login_hint: str = _LOGIN_HINT) -> dict[str, Any]:
    """One refresh at the token endpoint (the caller holds the single-flight lock)."""
    body = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CODEX_CLIENT_ID,
        "scope": "openid profile email offline_access",
    }
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
    try:
        response = await client.post(
            token_url,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    except httpx.TimeoutException:
        raise UpstreamTimeout("The ChatGPT token endpoint timed out while refreshing the login.") from None
    except httpx.HTTPError as exc:
        raise UpstreamFailure(
            f"Could not reach the ChatGPT token endpoint to refresh the login ({type(exc).__name__})."
        ) from None
    finally:
        if client is not http:
            await client.aclose()
    payload = _json_or_empty(response.content)
    if response.status_code != 200:
        code = _error_code(payload)
        REFRESHES.labels("failed").inc()
        if response.status_code in (400, 401, 403) or code in _DEAD_REFRESH_CODES:
            log.warning("ChatGPT login refresh refused (%s, code=%s)", response.status_code, code)
            raise AuthenticationFailed(
                "The ChatGPT login could not be refreshed"
                f"{' (' + code + ')' if code else ''}: it expired or was used by another program. "
                f"{login_hint}",
                code=code or "refresh_failed",
            )
        raise UpstreamFailure(f"The ChatGPT token endpoint answered {response.status_code} while refreshing.")
    if not isinstance(payload.get("access_token"), str) or not payload["access_token"]:
        raise UpstreamFailure("The ChatGPT token endpoint answered without an access token.")
    secrets.add(payload.get("access_token"), payload.get("refresh_token"), payload.get("id_token"))
    return payload
