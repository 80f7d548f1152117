"""OpenID Connect sign-in as a relying party: discovery, the authorization code flow with PKCE, and the
ID token's validation against the provider's published keys.

The protocol and the cryptography are Authlib's (``authlib``: its OAuth 2 client builds the
authorization URL with the S256 challenge and redeems the code; its ``CodeIDToken`` claims check
``iss``, ``aud``, ``exp``, ``iat``, ``nonce``, ``azp`` and ``at_hash``; the signature is verified by
``joserfc``, Authlib's own JOSE library, against the provider's JWKS). Nothing here hand-rolls a
signature check or a hash comparison. What is ours: caching the discovery document and keys (an
unknown ``kid`` re-reads the keys, at most once a minute, so key rotation works and a forged ``kid``
cannot make us hammer the provider), and turning every failure into one clear error.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from proxy.config.identity import OidcConfig
from proxy.errors import AuthenticationFailed, ServiceUnavailable

_METADATA_SECONDS = 3600.0
_KEYS_AGAIN_SECONDS = 60.0
_TIMEOUT = httpx.Timeout(10.0)
LEEWAY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class FlowStart:
    """What the browser is sent to, and what must come back with it (kept server-side)."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class OidcClient:
    """One configured provider. ``http`` is only for discovery and keys; the code exchange uses
    Authlib's client (an ``httpx.AsyncClient`` too), with the same bounded timeout."""

    def __init__(self, config: OidcConfig, client_secret: str | None, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.client_secret = client_secret
        self._transport = transport
        self._metadata: dict[str, Any] | None = None
        self._metadata_until = 0.0
        self._keys: KeySet | None = None
        self._keys_read_at = 0.0

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (``/.well-known/openid-configuration``), checked and cached."""
        if self._metadata is None or time.monotonic() >= self._metadata_until:
            document = await self._get_json(self.config.issuer + "/.well-known/openid-configuration")
            if document.get("issuer") != self.config.issuer:
                raise ServiceUnavailable("The OpenID provider's discovery document names another issuer "
                                         f"({str(document.get('issuer'))[:100]!r}); check identity.oidc.issuer.",
                                         code="oidc_unavailable")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(field), str):
                    raise ServiceUnavailable(f"The OpenID provider's discovery document has no {field}.",
                                             code="oidc_unavailable")
            self._metadata, self._metadata_until = document, time.monotonic() + _METADATA_SECONDS
        return self._metadata

    async def start(self, redirect_url: str) -> FlowStart:
        """The authorization URL for a new sign-in (fresh state, nonce and PKCE verifier)."""
        metadata = await self.metadata()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        async with self._oauth(redirect_url) as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=state,
                                                     code_verifier=verifier, nonce=nonce)
        return FlowStart(url, state, nonce, verifier)

    async def finish(self, code: str, redirect_url: str, flow_nonce: str, code_verifier: str) -> dict[str, Any]:
        """Redeem ``code`` and return the validated ID token's claims; a 401 for anything wrong."""
        metadata = await self.metadata()
        try:
            async with self._oauth(redirect_url) as client:
                token = await client.fetch_token(metadata["token_endpoint"], code=code, code_verifier=code_verifier,
                                                 redirect_uri=redirect_url, grant_type="authorization_code")
        except httpx.HTTPError:
            raise ServiceUnavailable("The OpenID provider's token endpoint could not be reached.",
                                     code="oidc_unavailable") from None
        except Exception as exc:  # Authlib raises OAuthError (and friends) for an error answer
            raise AuthenticationFailed(f"The OpenID provider refused the sign-in ({type(exc).__name__}: "
                                       f"{str(exc)[:200]}).", code="oidc_refused") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationFailed("The OpenID provider sent no ID token.", code="oidc_refused")
        return await self.validate(id_token, flow_nonce, token.get("access_token"))

    async def validate(self, id_token: str, nonce: str, access_token: str | None = None) -> dict[str, Any]:
        """The claims of ``id_token`` after Authlib checked signature, issuer, audience, expiry and nonce."""
        metadata = await self.metadata()
        algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in algorithms if alg != "none"]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            except JoseError:
                if not await self._reread_keys():  # a rotated key: read the keys once more, then decide
                    raise
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            params = {"nonce": nonce, "client_id": self.config.client_id}
            if access_token:
                params["access_token"] = access_token
            claims = CodeIDToken(decoded.claims, decoded.header,
                                 {"iss": {"essential": True, "value": self.config.issuer},
                                  "aud": {"essential": True, "value": self.config.client_id},
                                  "nonce": {"essential": True, "value": nonce}}, params)
            claims.validate(now=int(time.time()), leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed(f"The ID token did not validate ({type(exc).__name__}).",
                                       code="oidc_invalid_token") from None
        return dict(claims)

    async def _key_set(self) -> KeySet:
        if self._keys is None:
            await self._reread_keys()
        assert self._keys is not None
        return self._keys

    async def _reread_keys(self) -> bool:
        if self._keys is not None and time.monotonic() - self._keys_read_at < _KEYS_AGAIN_SECONDS:
            return False
        document = await self._get_json((await self.metadata())["jwks_uri"])
        try:
            self._keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError):
            raise ServiceUnavailable("The OpenID provider's keys (jwks_uri) could not be read.",
                                     code="oidc_unavailable") from None
        self._keys_read_at = time.monotonic()
        return True

    def _oauth(self, redirect_url: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.config.client_id, client_secret=self.client_secret,
                                 scope=" ".join(self.config.scopes), redirect_uri=redirect_url,
                                 code_challenge_method="S256", timeout=10.0,
                                 token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none")

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT, transport=self._transport, trust_env=False) as http:
                answer = await http.get(url)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError):
            raise ServiceUnavailable(f"The OpenID provider could not be read at {url[:200]}.",
                                     code="oidc_unavailable") from None
        if not isinstance(document, dict):
            raise ServiceUnavailable(f"The OpenID provider answered {url[:200]} with something else than an object.",
                                     code="oidc_unavailable")
        return document
