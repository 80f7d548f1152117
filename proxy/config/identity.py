"""The ``[identity]`` table of ``subrelay.toml``: single sign-on, a trusted proxy header, who is an admin,
how members' logins are sealed and whether one ChatGPT account may serve two people.

Checked completely at start-up like the rest of the file: an unknown key or a wrong type stops the
server with a message naming the key. Secrets never live here: the OpenID client secret is read from
the environment variable ``client_secret_env`` names (default ``SUBRELAY_OIDC_CLIENT_SECRET``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from proxy.errors import ConfigError

SEAL_MODES = ("server", "member")
SHARED_ACCOUNT_MODES = ("refuse", "warn")


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret_env: str = "SUBRELAY_OIDC_CLIENT_SECRET"
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # Where the provider sends the browser back; empty: this server's own origin + /auth/oidc/callback.
    redirect_url: str = ""


@dataclass(frozen=True, slots=True)
class TrustedHeaderConfig:
    header: str  # e.g. "X-Forwarded-Email" (oauth2-proxy), "Cf-Access-Authenticated-User-Email"
    proxies: tuple[str, ...]  # addresses or networks the header is accepted from; from anywhere else: refused
    groups_header: str = ""

    def from_proxy(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.proxies)


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    oidc: OidcConfig | None = None
    trusted_header: TrustedHeaderConfig | None = None
    admin_subjects: tuple[str, ...] = ()
    admin_emails: tuple[str, ...] = ()
    admin_groups: tuple[str, ...] = ()
    group_claim: str = "groups"
    # Members: a signed-in person with no user yet gets one (named from their email) when allowed.
    create_members: bool = False
    member_domains: tuple[str, ...] = ()  # when set, only these email domains may sign in as members
    session_hours: float = 12.0
    seal: str = "server"  # "member": a member's login opens only inside their own request
    shared_account: str = "refuse"  # "warn": allowed (with a warning) between users of the same person

    @property
    def sign_in(self) -> bool:
        return self.oidc is not None or self.trusted_header is not None


_KEYS = {"oidc", "trusted_header", "admins", "members", "sessions", "seal", "shared_account"}


def parse_identity(data: Any, fail: Callable[[str, str], ConfigError]) -> IdentityConfig:
    if not isinstance(data, dict):
        raise fail("identity", "must be a table: [identity]")
    _no_unknown(data, _KEYS, "identity", fail)
    oidc = None
    if "oidc" in data:
        raw = _table(data["oidc"], "identity.oidc", fail)
        _no_unknown(raw, {"issuer", "client_id", "client_secret_env", "scopes", "redirect_url"}, "identity.oidc", fail)
        issuer = _text(raw, "issuer", "identity.oidc", fail, required=True)
        if not issuer.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise fail("identity.oidc.issuer", "must be an https:// URL (http only on loopback, for tests)")
        scopes = _strings(raw, "scopes", "identity.oidc", fail) or ("openid", "email", "profile")
        if "openid" not in scopes:
            raise fail("identity.oidc.scopes", "must include 'openid'")
        oidc = OidcConfig(issuer=issuer.rstrip("/"), client_id=_text(raw, "client_id", "identity.oidc", fail, required=True),
                          client_secret_env=_text(raw, "client_secret_env", "identity.oidc", fail) or
                          "SUBRELAY_OIDC_CLIENT_SECRET", scopes=scopes,
                          redirect_url=_text(raw, "redirect_url", "identity.oidc", fail))
    header = None
    if "trusted_header" in data:
        raw = _table(data["trusted_header"], "identity.trusted_header", fail)
        _no_unknown(raw, {"header", "proxies", "groups_header"}, "identity.trusted_header", fail)
        proxies = _strings(raw, "proxies", "identity.trusted_header", fail)
        if not proxies:
            raise fail("identity.trusted_header.proxies", "must list the proxy addresses the header is trusted from")
        for net in proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise fail("identity.trusted_header.proxies", f"{net!r} is not an address or network") from None
        header = TrustedHeaderConfig(_text(raw, "header", "identity.trusted_header", fail, required=True).lower(),
                                     proxies, _text(raw, "groups_header", "identity.trusted_header", fail).lower())
    admins = _table(data.get("admins", {}), "identity.admins", fail)
    _no_unknown(admins, {"subjects", "emails", "groups", "group_claim"}, "identity.admins", fail)
    members = _table(data.get("members", {}), "identity.members", fail)
    _no_unknown(members, {"create", "email_domains"}, "identity.members", fail)
    sessions = _table(data.get("sessions", {}), "identity.sessions", fail)
    _no_unknown(sessions, {"hours"}, "identity.sessions", fail)
    hours = sessions.get("hours", 12.0)
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours <= 24 * 30:
        raise fail("identity.sessions.hours", "must be a number of hours above 0 and at most 720")
    create = members.get("create", False)
    if not isinstance(create, bool):
        raise fail("identity.members.create", "must be true or false")
    seal = data.get("seal", "server")
    if seal not in SEAL_MODES:
        raise fail("identity.seal", f"must be one of {', '.join(SEAL_MODES)}")
    shared = data.get("shared_account", "refuse")
    if shared not in SHARED_ACCOUNT_MODES:
        raise fail("identity.shared_account", f"must be one of {', '.join(SHARED_ACCOUNT_MODES)}")
    return IdentityConfig(
        oidc=oidc, trusted_header=header, admin_subjects=_strings(admins, "subjects", "identity.admins", fail),
        admin_emails=tuple(e.lower() for e in _strings(admins, "emails", "identity.admins", fail)),
        admin_groups=_strings(admins, "groups", "identity.admins", fail),
        group_claim=_text(admins, "group_claim", "identity.admins", fail) or "groups", create_members=create,
        member_domains=tuple(d.lower() for d in _strings(members, "email_domains", "identity.members", fail)),
        session_hours=float(hours), seal=seal, shared_account=shared)


def _no_unknown(raw: dict, allowed: set[str], where: str, fail) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise fail(f"{where}.{unknown[0]}", f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _table(value: Any, where: str, fail) -> dict:
    if not isinstance(value, dict):
        raise fail(where, "must be a table")
    return value


def _text(raw: dict, key: str, where: str, fail, *, required: bool = False) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{where}.{key}", "must be a non-empty string")
    return value.strip()


def _strings(raw: dict, key: str, where: str, fail) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise fail(f"{where}.{key}", "must be an array of strings")
    return tuple(value)


DEFAULT_IDENTITY = IdentityConfig()

