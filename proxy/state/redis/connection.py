"""One ``redis.asyncio`` client per use, built so that no wait is unbounded.

redis-py's defaults suit none of this: its pool is unbounded (2**31 connections), a URL can drop the
socket timeout, and its standalone client retries three times with backoff. Here the pool is a
:class:`BlockingConnectionPool` of ``SUBRELAY_REDIS_MAX_CONNECTIONS`` (a full pool waits, at most the
timeout), connect and socket timeouts are ``SUBRELAY_REDIS_TIMEOUT`` seconds (default 2), idle
connections are PINGed before reuse, and a failed command is retried once at once on a fresh connection
(a Redis restart leaves every pooled connection dead; one retry is what recovers without an error).
:func:`bounded` puts the whole call, pool wait and retry included, under the same deadline and turns
every failure into :class:`proxy.state.team.StoreError`: a 503 ``state_store_unavailable`` at the door.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.errors import ConfigError
from proxy.state.team import StoreError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    timeout: float = 2.0  # connect, each socket read/write, a pool wait, and each whole call
    max_connections: int = 32  # per process; a full pool waits (bounded) instead of opening more
    health_check_interval: int = 30  # PING a connection idle this long before using it
    prefix: str = "sr"  # every key is "{prefix}:..." (one hash slot, so scripts may touch several keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RedisOptions":
        default = cls()
        return cls(timeout=_number(env, "SUBRELAY_REDIS_TIMEOUT", default.timeout, 0.05, 60.0),
                   max_connections=int(_number(env, "SUBRELAY_REDIS_MAX_CONNECTIONS", default.max_connections, 1,
                                               10000)),
                   health_check_interval=int(_number(env, "SUBRELAY_REDIS_HEALTH_CHECK",
                                                     default.health_check_interval, 0, 3600)),
                   prefix=_prefix(env.get("SUBRELAY_REDIS_PREFIX") or default.prefix))


def create_client(url: str, options: RedisOptions) -> Redis:
    """A client with its own bounded pool. No connection is opened until the first command."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("SUBRELAY_REDIS_URL must start with redis://, rediss:// (TLS) or unix://")
    try:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=options.max_connections, timeout=options.timeout,
            socket_timeout=options.timeout, socket_connect_timeout=options.timeout,
            health_check_interval=options.health_check_interval, retry=Retry(NoBackoff(), 1))
    except ValueError as exc:
        raise ConfigError(f"SUBRELAY_REDIS_URL cannot be read: {exc}") from None
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1))


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """``await call`` within ``timeout`` seconds; any Redis or socket failure becomes :class:`StoreError`
    (its message names the kind of failure, never the URL, which may carry a password)."""
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise StoreError(f"Redis did not answer within {timeout:g} s") from None
    except (RedisError, OSError) as exc:
        raise StoreError(f"Redis is unavailable ({type(exc).__name__})") from None


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw[:40]!r}")
    return value


def _prefix(value: str) -> str:
    if not value or len(value) > 32 or not all(c.isalnum() or c in "-_." for c in value):
        raise ConfigError("SUBRELAY_REDIS_PREFIX must be 1-32 letters, digits, '-', '_' or '.'")
    return value
