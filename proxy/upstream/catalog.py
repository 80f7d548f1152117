"""Keeping model catalogues current for the login or key in use: Codex's and Anthropic's.

Slugs on ChatGPT plans and Claude model ids change every few months, so a shipped list goes stale.
Each catalogue is read from the vendor's models endpoint with the user's own credential, cached,
refreshed in the background, and dropped back to the shipped list whenever it cannot be read. Every
slug the Codex catalogue lists routes to Codex (ETag-aware: an unchanged one costs a 304); the
Claude ids the key can use are what ``/v1/models`` lists for Anthropic.

With ``--workers N`` the workers agree on one catalogue through a small file in their state
directory: whoever reads the backend writes what it got (atomically), the others apply the file
within ``poll_seconds``, and a non-blocking ``flock`` elects one worker per round to read it, so N
workers cost the backend one request per interval, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import orjson

from adapters.anthropic import ANTHROPIC_VERSION
from adapters.anthropic import USER_AGENT as ANTHROPIC_USER_AGENT
from adapters.codex import USER_AGENT
from adapters.codex.model_catalog import effort_levels, listed_slugs, routable_slugs
from proxy.credentials.base import Credential
from proxy.observe.redact import get_logger
from proxy.state.team import StoreError
from proxy.state.local.files import FileSlot
from proxy.state.slots import SharedSlot
from proxy.upstream.routing import Provider, credential_identity

log = get_logger("subrelay.catalog")

DEFAULT_CLIENT_VERSION = "0.169.0"  # the models endpoint filters by the features a client supports


class LiveCatalog:
    """What both catalogues share: the background loop, and agreeing with the other workers through
    a shared file. Subclasses read the vendor (:meth:`refresh`) and apply what they read."""

    what = "model catalogue"

    def __init__(self, provider: Provider, http: httpx.AsyncClient, *, refresh_seconds: float = 900.0,
                 timeout: float = 15.0, shared_path: str | None = None, poll_seconds: float = 5.0,
                 shared: SharedSlot | None = None) -> None:
        self.provider = provider
        self.http = http
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self.payload: dict[str, Any] | None = None
        self.etag: str | None = None
        self._task: asyncio.Task | None = None
        self._account: str | None = None  # whose catalogue this is (an account id, or a key's hash)
        # Where the workers (a file) or the replicas (Redis) agree on one catalogue; None: this process alone.
        self.shared: SharedSlot | None = shared if shared is not None else FileSlot(shared_path) if shared_path else None
        self.poll_seconds = poll_seconds
        self._shared_stamp: tuple[int, int, int] | None = None  # of the shared file as last read
        self._shared_record: dict[str, Any] | None = None

    async def refresh(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _apply(self, payload: dict[str, Any] | None, etag: str | None) -> None:
        raise NotImplementedError

    def _valid(self, payload: Any) -> bool:
        raise NotImplementedError

    def _identity(self, credential: Credential) -> str | None:
        raise NotImplementedError

    def _keeping(self) -> str:
        return "the last one" if self.payload else "the shipped list"

    async def _credential(self) -> Credential | None:
        """The credential to read with, switching to that login's or key's own catalogue when it
        changed; None when there is none to use (the shipped list applies)."""
        if self.provider.problem() is not None:
            self._apply(None, None)
            return None
        try:
            credential = await self.provider.credentials.current()
        except Exception as exc:  # a login or key problem is reported where requests are made, not here
            log.debug("no %s: %s", self.what, type(exc).__name__)
            return None
        if self._identity(credential) != self._account:  # another login or key: its catalogue, not the last one
            self._apply(None, None)
            self._account = self._identity(credential)
        return credential

    async def _get_json(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any, httpx.Headers] | None:
        """``(200, body, headers)`` or ``(304, None, headers)``; None (logged) when the vendor cannot be read."""
        try:
            response = await self.http.get(self.url, params=params, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            log.info("could not read the %s (%s); keeping %s", self.what, type(exc).__name__, self._keeping())
            return None
        if response.status_code == 304:
            return 304, None, response.headers
        if response.status_code != 200:
            log.info("the %s answered %s; keeping %s", self.what, response.status_code, self._keeping())
            return None
        try:
            return 200, orjson.loads(response.content), response.headers
        except orjson.JSONDecodeError:
            return None

    # -- sharing between workers ---------------------------------------------------------------------

    async def _publish(self) -> dict[str, Any] | None:
        """Write what this worker now holds for the others (also after a failed read, so they
        agree on the fallback and do not all retry at once); returns the payload."""
        if self.shared is not None:
            record = {"account": self._account, "etag": self.etag, "payload": self.payload, "read_at": time.time()}
            try:
                self._shared_stamp, self._shared_record = await self.shared.write(record), record
            except (OSError, StoreError) as exc:
                log.info("could not share the %s: %s", self.what, exc)
        return self.payload

    async def _read_shared(self) -> dict[str, Any] | None:
        try:
            record = orjson.loads(await self.shared.read() or b"null")
        except (orjson.JSONDecodeError, StoreError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("read_at"), (int, float)):
            return None
        payload = record.get("payload")
        if payload is not None and not self._valid(payload):
            return None
        return record

    async def follow_shared(self) -> None:
        """One round for a worker: apply the shared catalogue when another worker changed it (one
        stat when it did not); read the backend when it is stale or another login's, if elected."""
        if self.provider.problem() is not None:
            self._apply(None, None)
            return
        try:
            account = self._identity(await self.provider.credentials.current())
        except Exception as exc:
            log.debug("no catalogue: %s", type(exc).__name__)
            return
        try:
            if await self._take_shared(account):
                return
            held = await self.shared.try_lock()
        except StoreError as exc:  # the shared store is away: keep what we have, try next round
            log.debug("the shared %s is unavailable: %s", self.what, exc)
            return
        if held is None:
            return  # another worker is reading it; its record arrives next round
        try:
            if not await self._take_shared(account):  # nobody wrote it since the look above
                await self.refresh()
        finally:
            await self.shared.unlock(held)

    async def _take_shared(self, account: str | None) -> bool:
        """Apply the shared record if it changed; whether it is fresh for ``account``."""
        stamp = await self.shared.stamp()
        if stamp != self._shared_stamp:
            self._shared_stamp, self._shared_record = stamp, await self._read_shared()
            if self._fresh(account):
                self._account = account
                record = self._shared_record
                self._apply(record.get("payload"), record.get("etag") if isinstance(record.get("etag"), str) else None)
        return self._fresh(account)

    def _fresh(self, account: str | None) -> bool:
        record = self._shared_record
        return record is not None and record.get("account") == account and \
            time.time() - record["read_at"] < self.refresh_seconds

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Every ``poll_seconds``: the shared catalogue followed, or (one process) the vendor read when
        the interval is over, when there is no catalogue yet, or when the login changed: a login made
        after start-up lists its account's models within seconds, not after the interval."""
        due = 0.0
        while True:
            try:
                if self.shared is not None:
                    await self.follow_shared()
                elif self.payload is None or time.monotonic() >= due or await self._login_changed():
                    due = time.monotonic() + self.refresh_seconds
                    await self.refresh()
            except Exception:  # never let the refresher die; the next round tries again
                log.exception("refreshing the %s failed", self.what)
            await asyncio.sleep(min(self.poll_seconds, self.refresh_seconds))

    async def _login_changed(self) -> bool:
        """Whether the login (or key) is another one than the catalogue was read with."""
        if self.provider.problem() is not None:
            return self._account is not None
        try:
            return self._identity(await self.provider.credentials.current()) != self._account
        except Exception:  # noqa: BLE001 - no login now: a change if there was one
            return self._account is not None


class CodexCatalog(LiveCatalog):
    """The Codex backend's ``…/codex/models`` for the logged-in ChatGPT account."""

    what = "Codex model catalogue"

    def __init__(self, provider: Provider, http: httpx.AsyncClient, *, client_version: str = DEFAULT_CLIENT_VERSION,
                 **kwargs: Any) -> None:
        super().__init__(provider, http, **kwargs)
        self.client_version = client_version

    @property
    def url(self) -> str:
        return self.provider.adapter.url.rsplit("/responses", 1)[0] + "/models"

    async def refresh(self, client_version: str | None = None) -> dict[str, Any] | None:  # type: ignore[override]
        """Read the catalogue now (a 304 keeps the cached one); None when there is none to be had."""
        credential = await self._credential()
        if credential is None:
            return self.payload
        headers = codex_catalog_headers(credential, self.etag if self.payload is not None else None)
        got = await self._get_json({"client_version": client_version or self.client_version}, headers)
        if got is not None and got[0] == 200 and listed_slugs(got[1]) is not None:
            self._apply(got[1], got[2].get("etag"))
        return await self._publish()

    def _apply(self, payload: dict[str, Any] | None, etag: str | None) -> None:
        self.payload, self.etag = payload, etag
        adapter = self.provider.adapter
        adapter.live_models = listed_slugs(payload) if payload is not None else None
        adapter.live_routable = routable_slugs(payload) if payload is not None else set()
        adapter.live_efforts = effort_levels(payload) if payload is not None else {}

    def _valid(self, payload: Any) -> bool:
        return listed_slugs(payload) is not None

    def _identity(self, credential: Credential) -> str | None:
        return credential.account_id


def codex_catalog_headers(credential: Credential, etag: str | None = None) -> dict[str, str]:
    """How the Codex catalogue is asked for with one login (subrelay's own name, never a client's)."""
    headers = {"Authorization": f"Bearer {credential.access_token}", "originator": "subrelay",
               "User-Agent": USER_AGENT, "Accept": "application/json"}
    if credential.account_id:
        headers["chatgpt-account-id"] = credential.account_id
    if etag:
        headers["If-None-Match"] = etag
    return headers


class AnthropicCatalog(LiveCatalog):
    """The Claude models an Anthropic key can use, from ``GET /v1/models`` (paged, newest first)."""

    what = "Anthropic model list"
    MAX_PAGES = 10

    @property
    def url(self) -> str:
        return self.provider.adapter.url.rsplit("/messages", 1)[0] + "/models"

    async def refresh(self) -> dict[str, Any] | None:
        credential = await self._credential()
        if credential is None:
            return self.payload
        headers = {"x-api-key": credential.access_token, "anthropic-version": ANTHROPIC_VERSION,
                   "user-agent": ANTHROPIC_USER_AGENT, "accept": "application/json"}
        ids: list[str] = []
        params = {"limit": "1000"}
        for _ in range(self.MAX_PAGES):
            got = await self._get_json(params, headers)
            page = got[1] if got is not None and got[0] == 200 else None
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                return await self._publish()
            ids += [entry["id"] for entry in data if isinstance(entry, dict) and _model_id(entry.get("id"))]
            last = page.get("last_id")
            if page.get("has_more") is not True or not isinstance(last, str):
                break
            params = {"limit": "1000", "after_id": last}
        if ids:
            self._apply({"models": list(dict.fromkeys(ids))}, None)
        return await self._publish()

    def _apply(self, payload: dict[str, Any] | None, etag: str | None) -> None:
        self.payload, self.etag = payload, etag
        self.provider.adapter.live_models = list(payload["models"]) if payload is not None else None

    def _valid(self, payload: Any) -> bool:
        return isinstance(payload, dict) and isinstance(payload.get("models"), list) and \
            all(_model_id(model) for model in payload["models"])

    def _identity(self, credential: Credential) -> str | None:
        return credential_identity(credential)  # a hash of the key, never the key


def _model_id(value: Any) -> bool:
    """A model id fit to list and to route: printable ASCII without spaces, of a sane length."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value
