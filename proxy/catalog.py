"""Keeping the Codex model catalogue current for the account that is logged in.

Slugs on ChatGPT plans change every few months, so a shipped list goes stale. The catalogue is read
from the backend's models endpoint with the login's own credential, cached, refreshed in the
background (ETag-aware: an unchanged catalogue costs a 304), and dropped back to the shipped list
whenever it cannot be read. Every slug it lists routes to Codex, and ``/v1/models`` lists them.

With ``--workers N`` the workers agree on one catalogue through a small file in their state
directory: whoever reads the backend writes what it got (atomically), the others apply the file
within ``poll_seconds``, and a non-blocking ``flock`` elects one worker per round to read it, so N
workers cost the backend one request per interval, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import httpx
import orjson

from adapters.codex import USER_AGENT
from adapters.codex.model_catalog import listed_slugs, routable_slugs

from .credentials.files import atomic_write_json
from .redact import get_logger
from .routing import Provider
from .shared_files import file_stamp, lock

log = get_logger("subrelay.catalog")

DEFAULT_CLIENT_VERSION = "0.169.0"  # the models endpoint filters by the features a client supports


class CodexCatalog:
    def __init__(self, provider: Provider, http: httpx.AsyncClient, *, refresh_seconds: float = 900.0,
                 client_version: str = DEFAULT_CLIENT_VERSION, timeout: float = 15.0,
                 shared_path: str | None = None, poll_seconds: float = 5.0) -> None:
        self.provider = provider
        self.http = http
        self.refresh_seconds = refresh_seconds
        self.client_version = client_version
        self.timeout = timeout
        self.payload: dict[str, Any] | None = None
        self.etag: str | None = None
        self._task: asyncio.Task | None = None
        self._account: str | None = None
        self.shared_path = shared_path
        self.poll_seconds = poll_seconds
        self._shared_stamp: tuple[int, int, int] | None = None  # of the shared file as last read
        self._shared_record: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return self.provider.adapter.url.rsplit("/responses", 1)[0] + "/models"

    async def refresh(self, client_version: str | None = None) -> dict[str, Any] | None:
        """Read the catalogue now (a 304 keeps the cached one); None when there is none to be had."""
        source = self.provider.credentials
        if self.provider.problem() is not None:
            self._apply(None, None)
            return None
        try:
            credential = await source.current()
        except Exception as exc:  # a login problem is reported where requests are made, not here
            log.debug("no catalogue: %s", type(exc).__name__)
            return self.payload
        if credential.account_id != self._account:  # another login: its catalogue, not the last one
            self._apply(None, None)
            self._account = credential.account_id
        headers = {"Authorization": f"Bearer {credential.access_token}", "originator": "subrelay",
                   "User-Agent": USER_AGENT, "Accept": "application/json"}
        if credential.account_id:
            headers["chatgpt-account-id"] = credential.account_id
        if self.etag and self.payload is not None:
            headers["If-None-Match"] = self.etag
        try:
            response = await self.http.get(self.url, params={"client_version": client_version or self.client_version},
                                           headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            log.info("could not read the Codex model catalogue (%s); keeping %s", type(exc).__name__,
                     "the last one" if self.payload else "the shipped list")
            return self._publish()
        if response.status_code == 304:
            return self._publish()
        if response.status_code != 200:
            log.info("the Codex model catalogue answered %s; keeping %s", response.status_code,
                     "the last one" if self.payload else "the shipped list")
            return self._publish()
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return self._publish()
        if listed_slugs(payload) is None:
            return self._publish()
        self._apply(payload, response.headers.get("etag"))
        return self._publish()

    # -- sharing between workers ---------------------------------------------------------------------

    def _publish(self) -> dict[str, Any] | None:
        """Write what this worker now holds for the others (also after a failed read, so they
        agree on the fallback and do not all retry at once); returns the payload."""
        if self.shared_path is not None:
            record = {"account": self._account, "etag": self.etag, "payload": self.payload, "read_at": time.time()}
            try:
                atomic_write_json(self.shared_path, record)
                self._shared_stamp, self._shared_record = file_stamp(self.shared_path), record
            except OSError as exc:
                log.info("could not share the Codex model catalogue: %s", exc)
        return self.payload

    def _read_shared(self) -> dict[str, Any] | None:
        try:
            with open(self.shared_path, "rb") as handle:
                record = orjson.loads(handle.read())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("read_at"), (int, float)):
            return None
        payload = record.get("payload")
        if payload is not None and listed_slugs(payload) is None:
            return None
        return record

    async def follow_shared(self) -> None:
        """One round for a worker: apply the shared catalogue when another worker changed it (one
        stat when it did not); read the backend when it is stale or another login's, if elected."""
        if self.provider.problem() is not None:
            self._apply(None, None)
            return
        try:
            account = (await self.provider.credentials.current()).account_id
        except Exception as exc:
            log.debug("no catalogue: %s", type(exc).__name__)
            return
        if self._take_shared(account):
            return
        held = lock(self.shared_path + ".lock", wait=False)
        if held is None:
            return  # another worker is reading it; its file arrives next round
        try:
            if not self._take_shared(account):  # nobody wrote it since the look above
                await self.refresh()
        finally:
            os.close(held)

    def _take_shared(self, account: str | None) -> bool:
        """Apply the shared file if it changed; whether it is fresh for ``account``."""
        stamp = file_stamp(self.shared_path)
        if stamp != self._shared_stamp:
            self._shared_stamp, self._shared_record = stamp, self._read_shared()
            if self._fresh(account):
                self._account = account
                record = self._shared_record
                self._apply(record.get("payload"), record.get("etag") if isinstance(record.get("etag"), str) else None)
        return self._fresh(account)

    def _fresh(self, account: str | None) -> bool:
        record = self._shared_record
        return record is not None and record.get("account") == account and \
            time.time() - record["read_at"] < self.refresh_seconds

    def _apply(self, payload: dict[str, Any] | None, etag: str | None) -> None:
        self.payload, self.etag = payload, etag
        adapter = self.provider.adapter
        adapter.live_models = listed_slugs(payload) if payload is not None else None
        adapter.live_routable = routable_slugs(payload) if payload is not None else set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await (self.follow_shared() if self.shared_path else self.refresh())
            except Exception:  # never let the refresher die; the next round tries again
                log.exception("refreshing the Codex model catalogue failed")
            await asyncio.sleep(min(self.poll_seconds, self.refresh_seconds) if self.shared_path else self.refresh_seconds)

