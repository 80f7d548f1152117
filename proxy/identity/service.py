"""The identity service the edge and the sign-in routes share: the config, the OpenID client, the store
sessions live in, and the one function that turns a cookie or a trusted header into a :class:`Caller`.

Sessions and trusted headers count on the browser surfaces only (the admin page and API, the account
page and API, ``/auth/…``): the model API takes keys, which is what CLIs and SDKs send.
"""

from __future__ import annotations

import hmac
from dataclasses import replace

from collections.abc import Mapping
from typing import TYPE_CHECKING

from proxy.config.identity import IdentityConfig
from proxy.errors import AuthenticationFailed, PermissionDenied
from proxy.hub.caller import Caller
from proxy.identity import sessions
from proxy.identity.people import Person, is_admin, member_user, person_from_header
from proxy.state.team import TeamStore
from proxy.team.context import Team, open_team
from proxy.team.gate import TeamGate

if TYPE_CHECKING:  # Authlib, joserfc and cryptography (~240 modules, ~6 MB) load only where SSO is set up
    from proxy.identity.oidc import OidcClient

BROWSER_PREFIXES = ("/admin", "/api/admin", "/account", "/api/account", "/api/llm/", "/auth/")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class IdentityService:
    def __init__(self, config: IdentityConfig, gate: TeamGate, env: Mapping[str, str]) -> None:
        self.config = config
        self.gate = gate
        self.env = env
        self.oidc: OidcClient | None = None
        if config.oidc is not None:
            from proxy.identity.oidc import OidcClient

            self.oidc = OidcClient(config.oidc, env.get(config.oidc.client_secret_env) or None)

    def team(self, *, create: bool = False) -> Team | None:
        """The team store sessions and links live in; a first sign-in may create it."""
        team = self.gate.open()
        if team is None and create:
            made = open_team(self.env, create=True)
            team = self.gate.open() or made
        return team

    def forged_header(self, scope, headers: dict[bytes, bytes]) -> PermissionDenied | None:
        """The refusal for the trusted header sent from anywhere but a configured proxy (None: not sent,
        or sent by the proxy). The WebSocket edge asks this too: no path takes the header from elsewhere."""
        trusted = self.config.trusted_header
        if trusted is None or trusted.header.encode() not in headers:
            return None
        client = scope.get("client")
        if trusted.from_proxy(client[0] if client else None):
            return None
        return PermissionDenied(f"The '{trusted.header}' header is accepted only from the configured "
                                "authenticating proxy; this request did not come from it.",
                                code="identity_header_refused")

    async def identify(self, scope, headers: dict[bytes, bytes], *, has_key: bool) -> Caller | None:
        """The caller a trusted header or a session cookie names, else None (keys are looked at next).

        A trusted header from anywhere but a configured proxy is refused outright, on every path:
        whoever sends it is trying to be someone else."""
        trusted = self.config.trusted_header
        browser = scope["path"].startswith(BROWSER_PREFIXES)
        if trusted is not None and trusted.header.encode() in headers:
            forged = self.forged_header(scope, headers)
            if forged is not None:
                raise forged
            if browser and not has_key:
                value = headers[trusted.header.encode()].decode("latin-1")
                groups = headers.get(trusted.groups_header.encode(), b"").decode("latin-1") \
                    if trusted.groups_header else ""
                if not value.strip() or len(value) > 320:
                    raise AuthenticationFailed(f"The '{trusted.header}' header names nobody.",
                                               code="identity_header_invalid")
                return await self.caller_for(person_from_header(value, groups, self.config), via="header")
        if not browser or has_key:
            return None
        token = sessions.token_from(headers.get(b"cookie"))
        team = self.team() if token else None
        if token is None or team is None:
            return None
        session = await sessions.find(team.store, token)
        if session is None:
            return None
        if scope["method"] not in _SAFE_METHODS:
            sent = headers.get(b"x-csrf-token", b"")
            if not hmac.compare_digest(sent, session.csrf.encode()):
                raise PermissionDenied("This request needs the page's CSRF token in 'x-csrf-token' (reload the "
                                       "page).", code="csrf_token_invalid")
        scope["subrelay.session"] = token
        user = await team.store.get_user(session.user) if session.user else None
        if session.user and (user is None or user.disabled):
            if not session.admin:
                raise AuthenticationFailed("Your subrelay user is disabled or was removed; ask an admin.",
                                           code="member_disabled")
            user = None
        caller = _caller(session.identity, session.admin, user.name if user else None, via="session",
                         since=user.created_at if user else 0.0)
        if self.config.seal == "member" and user is not None:  # the session token opens what was sealed for it
            from proxy.team.member_seal import derive

            caller = replace(caller, unlock=derive(token.encode()), credential_id=sessions.token_hash(token),
                             credential_expires=session.expires_at)
        return caller

    async def caller_for(self, person: Person, *, via: str) -> Caller:
        """An admin, a member, or a refusal, for a person the provider or the proxy vouched for."""
        admin = is_admin(person, self.config)
        user = None
        team = self.team(create=self.config.create_members)
        if team is not None:
            user = await member_user(team.store, person, self.config)
        if user is not None and user.disabled:
            if not admin:
                raise AuthenticationFailed("Your subrelay user is disabled; ask an admin.", code="member_disabled")
            user = None
        if user is None and not admin:
            raise PermissionDenied(f"{person.email or person.subject} is neither an admin nor a member of this "
                                   "subrelay; ask an admin to add you.", code="member_not_found")
        return _caller(person.identity, admin, user.name if user else None, via=via,
                       since=user.created_at if user else 0.0)

    def store(self) -> TeamStore | None:
        team = self.team()
        return team.store if team is not None else None


def _caller(identity: str, admin: bool, user: str | None, *, via: str, since: float = 0.0) -> Caller:
    if user is not None:
        return Caller("user", name=user, key_id=via, admin=admin, identity=identity, via=via, since=since)
    return Caller("owner", key_id="admin", admin=admin, identity=identity, via=via)


