"""Each team member's own Codex model catalogue: the models *their* plan has, read with their own login
when they list models (``/v1/models``, the Codex CLI's ``/models``), cached per account.

The shared catalogue (:mod:`proxy.upstream.catalog`) is the owner's login's, and it steers routing for
everyone; a member's catalogue is read and kept apart from it, so listing models as alice never changes
what bob or the owner see, and nobody's plan is read with anyone else's login.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from adapters.codex.model_catalog import listed_slugs
from proxy.errors import ProxyError
from proxy.hub.caller import CALLER
from proxy.observe.redact import get_logger
from proxy.upstream.catalog import DEFAULT_CLIENT_VERSION, codex_catalog_headers

log = get_logger("subrelay.team.catalogs")
TTL_SECONDS = 900.0
_MAX_ACCOUNTS = 1000


class MemberCatalogs:
    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any] | None, str | None]] = {}

    async def own_slugs(self, state) -> list[str]:
        """The calling member's own listed model slugs (none without a login: never another login's)."""
        own = await self.for_caller(state)
        return list(listed_slugs(own) or ()) if own is not None else []

    async def for_caller(self, state, client_version: str | None = None) -> dict[str, Any] | None:
        """The calling member's own catalogue, or None (not a member, no login, or unreadable: then the
        shipped list applies, never another login's catalogue)."""
        caller = CALLER.get()
        if caller.kind != "user":
            return None
        source = next((p for p in state.router.providers.values() if hasattr(p.credentials, "user_login")), None)
        if source is None:
            return None
        try:
            credential = await source.credentials.user_login(caller.name).current()
        except ProxyError:
            return None
        version = (client_version or DEFAULT_CLIENT_VERSION)[:32]
        key = (credential.account_id or caller.name, version)
        read_at, payload, etag = self._cache.get(key, (0.0, None, None))
        if payload is not None and time.monotonic() - read_at < self.ttl:
            return payload
        url = source.adapter.url.rsplit("/responses", 1)[0] + "/models"
        try:
            response = await state.upstream.http.get(url, params={"client_version": version}, timeout=15.0,
                                                     headers=codex_catalog_headers(credential, etag if payload else None))
        except httpx.HTTPError as exc:
            log.info("could not read %s's model catalogue (%s)", caller.name, type(exc).__name__)
            return payload
        if response.status_code == 200:
            try:
                fresh = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                fresh = None
            if listed_slugs(fresh) is not None:
                payload, etag = fresh, response.headers.get("etag")
        elif response.status_code != 304:
            log.info("%s's model catalogue answered %s", caller.name, response.status_code)
            return payload
        if len(self._cache) >= _MAX_ACCOUNTS:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), payload, etag)
        return payload
