"""Alerts to webhooks, off the request path: a person's login needs a new sign-in, a plan window passed
a threshold, a budget passed a soft threshold or is spent, the degradation ladder stepped.

:meth:`Alerts.send` only puts the event on a bounded queue (a full queue drops the event with a
warning: an alert never blocks or fails a request). A background task posts each event as JSON, signed
with HMAC-SHA256 over ``"<timestamp>.<body>"`` in ``x-subrelay-signature: t=<timestamp>,v1=<hex>``
(a receiver recomputes it with the shared secret and refuses old timestamps), and retries a failed
delivery (a transport error, or any status but 2xx) with exponential backoff up to ``attempts`` times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from proxy.observe.periodic import cancel_and_wait
from proxy.observe.redact import get_logger

log = get_logger("subrelay.alerts")
QUEUE_SIZE = 1000
FIRST_BACKOFF = 0.5  # seconds before the first retry, doubled each time (capped at MAX_BACKOFF)
MAX_BACKOFF = 30.0
EVENTS = ("login.needs_login", "plan.threshold", "budget.threshold", "budget.exhausted", "ladder.step")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``x-subrelay-signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is no older than ``tolerance`` seconds."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


@dataclass(frozen=True, slots=True)
class Hook:
    url: str
    secret: bytes
    events: tuple[str, ...] = ()
    timeout: float = 5.0
    attempts: int = 5

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class Alerts:
    """Webhook delivery for one process: a bounded queue and one sender task."""

    def __init__(self, hooks: list[Hook], *, first_backoff: float = FIRST_BACKOFF) -> None:
        self.hooks = hooks
        self.first_backoff = first_backoff
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_config(cls, configs: tuple, env: Mapping[str, str]) -> "Alerts | None":
        """From ``[webhooks]`` in subrelay.toml; a hook whose secret variable is empty is left out, loudly."""
        hooks = []
        for config in configs:
            secret = env.get(config.secret_env, "")
            if not secret:
                log.error("webhook %s is off: the environment variable %s (its signing secret) is empty",
                          config.url.split("?")[0], config.secret_env)
                continue
            hooks.append(Hook(config.url, secret.encode(), config.events, config.timeout, config.attempts))
        return cls(hooks) if hooks else None

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Queue ``event`` for every hook that wants it; never waits, never raises."""
        if not any(hook.wants(event) for hook in self.hooks):
            return
        try:
            if self._queue is None:
                self._queue = asyncio.Queue(QUEUE_SIZE)
                self._task = asyncio.get_running_loop().create_task(self._run())
            self._queue.put_nowait({"id": uuid.uuid4().hex, "event": event, "created": int(time.time()),
                                    "pid": os.getpid(), "data": data})
        except asyncio.QueueFull:
            log.warning("alert %s dropped: %d alerts are waiting to be delivered", event, QUEUE_SIZE)
        except RuntimeError:  # no running loop (a command): nothing to deliver with
            log.warning("alert %s not sent: no event loop", event)

    async def _run(self) -> None:
        assert self._queue is not None
        self._client = httpx.AsyncClient(follow_redirects=False)
        while True:
            payload = await self._queue.get()
            body = orjson.dumps(payload)
            await asyncio.gather(*(self._deliver(hook, body, payload["event"]) for hook in self.hooks
                                   if hook.wants(payload["event"])))
            self._queue.task_done()

    async def _deliver(self, hook: Hook, body: bytes, event: str) -> bool:
        wait = self.first_backoff
        for attempt in range(1, hook.attempts + 1):
            timestamp = int(time.time())
            headers = {"content-type": "application/json", "user-agent": "subrelay-alerts",
                       "x-subrelay-event": event, "x-subrelay-delivery-attempt": str(attempt),
                       "x-subrelay-signature": signature(hook.secret, timestamp, body)}
            try:
                answer = await self._client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
                if 200 <= answer.status_code < 300:
                    self.delivered += 1
                    return True
                why = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if attempt < hook.attempts:
                log.info("alert %s to %s failed (%s); retrying in %.1f s", event, _where(hook.url), why, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_BACKOFF)
        self.failed += 1
        log.warning("alert %s to %s failed %d times; dropped", event, _where(hook.url), hook.attempts)
        return False

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every queued alert was delivered or dropped (shutdown, tests)."""
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.drain()
        await cancel_and_wait(self._task)
        if self._client is not None:
            await self._client.aclose()


def _where(url: str) -> str:
    """The URL without its query (a token may ride there)."""
    return url.split("?", 1)[0]
