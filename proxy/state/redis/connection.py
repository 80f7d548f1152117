"""One ``redis.asyncio`` client per use, built so that no wait is unbounded.

redis-py's defaults suit none of this: its pool is unbounded (2**31 connections), a URL can drop the
socket timeout, and its standalone client retries three times with backoff. Here the pool is a
:class:`BlockingConnectionPool` of ``SUBRELAY_REDIS_MAX_CONNECTIONS`` (a full pool waits, at most the
timeout), connect and socket timeouts are ``SUBRELAY_REDIS_TIMEOUT`` seconds (default 2), idle
connections are PINGed before reuse, and a failed command is retried once at once on a fresh connection
(a Redis restart leaves every pooled connection dead; one retry is what recovers without an error).
:func:`bounded` puts the whole call, pool wait and retry included, under the same deadline and turns
every failure into :class:`proxy.state.team.StoreError`: a 503 ``state_store_unavailable`` at the door.

The same bounds hold for the three shapes :mod:`proxy.state.redis.target` reads: one server, a primary
found through Sentinel (the pool asks the sentinels again whenever a connection breaks or the old primary
answers READONLY, so a failover is followed without a restart; while no sentinel names a primary every call
fails fast as :class:`StoreError`), and Redis Cluster (redis-py's per-node pools refuse when full, a 503
under a burst; :class:`_WaitingCluster` makes a caller wait for one of ``max_connections`` turns instead,
bounded by the same deadline). :func:`durable` runs a write that must survive a failover and waits (``WAIT``) for
``SUBRELAY_REDIS_WAIT_REPLICAS`` replicas to hold it before the caller treats it as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.retry
import redis.sentinel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from proxy.errors import ConfigError
from proxy.state.redis.target import RedisTarget, parse_target
from proxy.state.team import StoreError

_CREDENTIALS = ("SUBRELAY_REDIS_USERNAME", "SUBRELAY_REDIS_PASSWORD", "SUBRELAY_REDIS_SENTINEL_USERNAME",
                "SUBRELAY_REDIS_SENTINEL_PASSWORD", "SUBRELAY_REDIS_CA_FILE")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    timeout: float = 2.0  # connect, each socket read/write, a pool wait, and each whole call
    max_connections: int = 32  # per process; a full pool waits (bounded) instead of opening more
    health_check_interval: int = 30  # PING a connection idle this long before using it
    prefix: str = "sr"  # every key is "{prefix}:..." (one hash slot, so scripts may touch several keys)
    # Replicas that must hold a login, key, disable or removal before it counts as done (WAIT); None: 1 behind
    # Sentinel (it has replicas by design), 0 otherwise (one server relies on its AOF fsync).
    wait_replicas: int | None = None
    wait_timeout: float | None = None  # how long WAIT may take, in seconds; None: half of ``timeout``
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the SUBRELAY_REDIS_* secrets

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RedisOptions":
        default = cls()
        timeout = _number(env, "SUBRELAY_REDIS_TIMEOUT", default.timeout, 0.05, 60.0)
        wait_replicas = env.get("SUBRELAY_REDIS_WAIT_REPLICAS")
        wait_timeout = env.get("SUBRELAY_REDIS_WAIT_TIMEOUT")
        return cls(timeout=timeout,
                   max_connections=int(_number(env, "SUBRELAY_REDIS_MAX_CONNECTIONS", default.max_connections, 1,
                                               10000)),
                   health_check_interval=int(_number(env, "SUBRELAY_REDIS_HEALTH_CHECK",
                                                     default.health_check_interval, 0, 3600)),
                   prefix=_prefix(env.get("SUBRELAY_REDIS_PREFIX") or default.prefix),
                   wait_replicas=int(_number(env, "SUBRELAY_REDIS_WAIT_REPLICAS", 0, 0, 16)) if wait_replicas
                   else None,
                   wait_timeout=_number(env, "SUBRELAY_REDIS_WAIT_TIMEOUT", 0, 0.01, timeout * 0.9) if wait_timeout
                   else None,
                   credentials=tuple((name, env[name]) for name in _CREDENTIALS if env.get(name)))

    def replicas_for(self, target: RedisTarget) -> int:
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if target.kind == "sentinel" else 0

    @property
    def wait_ms(self) -> int:
        return max(int((self.wait_timeout if self.wait_timeout is not None else self.timeout / 2) * 1000), 1)


_HOLDING = contextvars.ContextVar("subrelay_cluster_turn", default=False)


class _WaitingCluster(RedisCluster):
    """redis-py's async cluster client, but a command or pipeline past ``max_connections`` in flight waits
    for a turn (under the caller's deadline, see :func:`bounded`) instead of failing with
    ``MaxConnectionsError``. Every key shares one hash slot, so one node carries all of it and one gate of
    that size per client keeps that node's pool from overflowing. A task already holding a turn (a pipeline
    whose fallback runs single commands) does not take a second one: no deadlock when the gate is full."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, max_connections=max_connections, **kwargs)
        self.subrelay_gate = asyncio.Semaphore(max_connections)

    @contextlib.asynccontextmanager
    async def turn(self):  # type: ignore[no-untyped-def]
        if _HOLDING.get():
            yield
            return
        async with self.subrelay_gate:
            token = _HOLDING.set(True)
            try:
                yield
            finally:
                _HOLDING.reset(token)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _WaitingPipeline(self, transaction)


class _WaitingPipeline(ClusterPipeline):
    """A pipeline of :class:`_WaitingCluster`: its execution takes one turn."""

    def __init__(self, client: _WaitingCluster, transaction: Any = None) -> None:
        super().__init__(client, transaction)
        self.subrelay_client = client

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        async with self.subrelay_client.turn():
            return await super().execute(*args, **kwargs)


class _Sentinel(Sentinel):
    """redis-py's Sentinel asks the sentinels one after another, so one that is partitioned away (silent,
    not refusing) costs a whole connect timeout first, and under the caller's deadline the primary is then
    never found: seen as a failover that subrelay never followed. Here all are asked at once; the answer
    from the highest configuration epoch among the first majority (or all, or whatever came within half
    the timeout) wins, so a stale sentinel that still names the old primary loses to the ones that voted."""

    def __init__(self, *args: Any, discovery_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.discovery_timeout = discovery_timeout

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        async def ask(sentinel: Redis) -> tuple[int, str, int] | None:
            state = (await sentinel.sentinel_masters()).get(service_name)
            if not state or not self.check_master_state(state, service_name):
                return None
            return int(state.get("config-epoch") or 0), state["ip"], int(state["port"])

        asks = [asyncio.ensure_future(ask(sentinel)) for sentinel in self.sentinels]
        majority, found, failed = len(asks) // 2 + 1, [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.discovery_timeout
        pending = set(asks)
        try:
            while pending and len(found) < majority and not (found and loop.time() >= deadline):
                left = max(deadline - loop.time(), 0.01) if found else None
                done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for each in done:
                    answer = None if each.exception() is not None else each.result()
                    if answer is None:
                        failed += 1
                    else:
                        found.append(answer)
        finally:
            for each in pending:
                each.cancel()
        if not found:
            raise MasterNotFoundError(f"No master found for {service_name!r} "
                                      f"({failed} sentinel(s) answered without one)")
        _, host, port = max(found)
        return host, port


class _FollowingConnection(SentinelManagedConnection):
    """A connection to the primary Sentinel named that drops itself when that node stops taking writes
    for want of replicas (NOREPLICAS: it is cut off from them, and the sentinels are likely promoting
    another). redis-py does this only for READONLY; without it a primary partitioned from its replicas but
    not from subrelay kept every pooled connection, and subrelay refused writes until the partition healed.
    The ConnectionError makes the one retry ask the sentinels again."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if self.connection_pool.is_master and "NOREPLICAS" in str(exc)[:300]:
                await self.disconnect()
                raise RedisConnectionError("the primary has no replicas in reach (NOREPLICAS)") from None
            raise


class _SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (asks the sentinels for the primary on every new connection) with the blocking,
    bounded wait of :class:`BlockingConnectionPool` instead of an error when full."""


class _SyncSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The same, for the blocking client of the response record."""


def create_client(url: str, options: RedisOptions, *, max_connections: int | None = None,
                  sync: bool = False) -> Any:
    """A client with its own bounded pool (``redis.asyncio``, or the blocking ``redis`` client with ``sync``).
    No connection is opened until the first command."""
    target = parse_target(url, dict(options.credentials))
    size = max_connections or options.max_connections
    bounds = {"socket_timeout": options.timeout, "socket_connect_timeout": options.timeout,
              "health_check_interval": options.health_check_interval}
    secrets = {"username": target.username, "password": target.password}
    tls = _tls_kwargs(target)
    lib = _SYNC if sync else _ASYNC
    try:
        if target.kind == "sentinel":
            sentinel_auth = {"username": target.sentinel_username, "password": target.sentinel_password}
            discovery = {} if sync else {"discovery_timeout": options.timeout / 2}
            sentinel = lib.Sentinel(list(target.hosts), min_other_sentinels=0, **discovery,
                                    sentinel_kwargs={**bounds, **sentinel_auth, **tls,
                                                     "retry": lib.Retry(NoBackoff(), 0)},
                                    **bounds, **secrets, **tls)
            following = {} if sync else {"connection_class": _FollowingConnection}
            client = sentinel.master_for(target.master, connection_pool_class=lib.SentinelPool, db=target.db,
                                         **following,
                                         max_connections=size, timeout=options.timeout,
                                         retry=lib.Retry(NoBackoff(), 1))
            client.subrelay_sentinel = sentinel  # closed with the client (see close_client)
        elif target.kind == "cluster":
            client = lib.RedisCluster(startup_nodes=[lib.ClusterNode(host, port) for host, port in target.hosts],
                                      max_connections=size, require_full_coverage=True, **bounds, **secrets, **tls)
        else:
            pool = lib.BlockingConnectionPool.from_url(url, max_connections=size, timeout=options.timeout,
                                                       retry=lib.Retry(NoBackoff(), 1), **bounds,
                                                       **{k: v for k, v in secrets.items() if v},
                                                       **({k: v for k, v in tls.items() if k == "ssl_ca_certs"}))
            client = lib.Redis(connection_pool=pool, retry=lib.Retry(NoBackoff(), 1))
    except (ValueError, RedisClusterException) as exc:
        raise ConfigError(f"SUBRELAY_REDIS_URL cannot be read: {type(exc).__name__}") from None
    client.subrelay_target = target
    return client


class _ASYNC:
    Sentinel, SentinelPool, RedisCluster, ClusterNode = _Sentinel, _SentinelPool, _WaitingCluster, ClusterNode
    BlockingConnectionPool, Redis, Retry = BlockingConnectionPool, Redis, Retry


class _SYNC:
    Sentinel, SentinelPool = redis.sentinel.Sentinel, _SyncSentinelPool
    RedisCluster, ClusterNode = redis.cluster.RedisCluster, redis.cluster.ClusterNode
    BlockingConnectionPool, Redis, Retry = redis.BlockingConnectionPool, redis.Redis, redis.retry.Retry


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    options: dict[str, Any] = {"ssl": True}
    for name, value in target.tls_options:
        options[name] = value.lower() not in ("0", "false", "no") if name == "ssl_check_hostname" else value
    if target.kind == "single":
        options.pop("ssl", None)  # the rediss:// scheme says it already
    return options


async def close_client(client: Redis) -> None:
    """Close the client and, behind Sentinel, the connections to the sentinels too."""
    await client.aclose()
    sentinel = getattr(client, "subrelay_sentinel", None)
    for each in getattr(sentinel, "sentinels", ()):
        await each.aclose()


async def durable(client: Redis, key: str, command: tuple[Any, ...], replicas: int, wait_ms: int,
                  timeout: float) -> Any:
    """Run ``command`` (a write) and, with ``replicas`` > 0, ``WAIT`` on the same connection until that many
    replicas hold it; fewer in ``wait_ms`` is :class:`StoreError` (the primary has it, but a failover now could
    lose it: the caller must not treat it as done). ``key`` picks the node in a cluster."""
    if replicas <= 0:
        return await bounded(client.execute_command(*command), timeout)

    async def run() -> Any:
        if isinstance(client, _WaitingCluster):
            async with client.turn():
                return await on_one_connection()
        return await on_one_connection()

    async def on_one_connection() -> Any:
        if isinstance(client, RedisCluster):
            await client.initialize()
            node = client.get_node_from_key(key)
            connection = node.acquire_connection()
            release = lambda: node.release(connection)  # noqa: E731
        else:
            pool = client.connection_pool
            connection = await pool.get_connection()
            release = lambda: pool.release(connection)  # noqa: E731
        try:
            await connection.send_command(*command)
            outcome = await connection.read_response()
            await connection.send_command("WAIT", replicas, wait_ms)
            acknowledged = await connection.read_response()
            if int(acknowledged) < replicas and isinstance(connection, SentinelManagedConnection):
                await connection.disconnect()  # the next connection asks the sentinels: a failover may be on
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            result = release()
            if asyncio.iscoroutine(result):
                await result
        if int(acknowledged) < replicas:
            raise StoreError(f"Redis could not confirm the write on {replicas} replica(s) within {wait_ms} ms "
                             f"({int(acknowledged)} did)")
        return outcome

    return await bounded(run(), timeout)


async def bounded(call: Awaitable[T], timeout: float) -> T:
    """``await call`` within ``timeout`` seconds; any Redis or socket failure becomes :class:`StoreError`
    (its message names the kind of failure, never the URL, which may carry a password)."""
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise StoreError(f"Redis did not answer within {timeout:g} s") from None
    except (RedisError, RedisClusterException, OSError) as exc:  # the cluster's own errors are not RedisErrors
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
