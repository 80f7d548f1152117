"""The ID token's checks (proxy.identity.oidc, done by Authlib and joserfc): a token signed by the
provider's published key, for us, with our nonce and unexpired, is accepted; anything else is refused.
The provider is an httpx mock transport serving discovery and the key set."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from proxy.config.identity import OidcConfig
from proxy.errors import AuthenticationFailed, ServiceUnavailable
from proxy.identity.oidc import OidcClient

ISSUER = "https://login.example.test"
CLIENT = "subrelay"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


def _provider(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/.well-known/openid-configuration":
        return httpx.Response(200, json={"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                                         "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
                                         "id_token_signing_alg_values_supported": ["RS256"]})
    if request.url.path == "/jwks":
        return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
    return httpx.Response(404)


def _client() -> OidcClient:
    return OidcClient(OidcConfig(issuer=ISSUER, client_id=CLIENT), "secret", transport=httpx.MockTransport(_provider))


def _token(key=KEY, **changes) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "ada", "iat": now, "exp": now + 300, "nonce": "n-1",
              "email": "ada@example.test", "email_verified": True, **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


async def test_a_token_from_the_provider_for_us_with_our_nonce_is_accepted():
    claims = await _client().validate(_token(), "n-1")
    assert claims["sub"] == "ada" and claims["email"] == "ada@example.test"


@pytest.mark.parametrize("token", [
    _token(aud="another-client"),
    _token(iss="https://evil.example.test"),
    _token(nonce="n-2"),
    _token(nonce=None),
    _token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    _token(key=OTHER),  # same kid, another key: a forged signature
], ids=["audience", "issuer", "nonce", "no-nonce", "expired", "signature"])
async def test_a_token_that_is_not_for_us_or_not_from_the_provider_is_refused(token):
    with pytest.raises(AuthenticationFailed) as refused:
        await _client().validate(token, "n-1")
    assert refused.value.code == "oidc_invalid_token"


async def test_an_unsigned_token_is_refused():
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    unsigned = part({"alg": "none"}) + "." + part({"iss": ISSUER, "aud": CLIENT, "sub": "ada", "iat": now,
                                                   "exp": now + 300, "nonce": "n-1"}) + "."
    with pytest.raises(AuthenticationFailed):
        await _client().validate(unsigned, "n-1")


async def test_the_authorization_url_carries_pkce_state_and_nonce():
    start = await _client().start("https://relay.example.test/auth/oidc/callback")
    url = httpx.URL(start.url)
    assert url.params["code_challenge_method"] == "S256" and len(url.params["code_challenge"]) == 43
    assert url.params["state"] == start.state and url.params["nonce"] == start.nonce
    assert url.params["response_type"] == "code" and url.params["client_id"] == CLIENT


async def test_a_discovery_document_naming_another_issuer_is_refused():
    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://evil.example.test", "authorization_endpoint": "x",
                                         "token_endpoint": "x", "jwks_uri": "x"})

    client = OidcClient(OidcConfig(issuer=ISSUER, client_id=CLIENT), None, transport=httpx.MockTransport(lying))
    with pytest.raises(ServiceUnavailable):
        await client.metadata()
