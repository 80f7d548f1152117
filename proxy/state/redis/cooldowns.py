"""Cooldowns shared by replicas on several hosts, through one Redis hash.

Cooldowns only order a fallback chain (they never refuse a request), and the router asks for them
synchronously on every request; so this keeps the in-memory :class:`proxy.state.cooldowns.Cooldowns`
for decisions and exchanges with Redis in the background, never on the request path: a noted cooldown
is written at once (a task), and every ``SUBRELAY_REDIS_COOLDOWN_POLL`` seconds (1 s) at most, the next
read starts a task that fetches the others'. Deadlines are kept on Redis's clock (``TIME`` inside the
scripts) and turned into this host's clock on arrival, so skew between hosts does not stretch them.
If Redis is away, each replica still honours the cooldowns it saw itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from redis.asyncio import Redis

from proxy.observe.redact import get_logger
from proxy.state.cooldowns import CooldownKey, Cooldowns
from proxy.state.redis.connection import RedisOptions, bounded, close_client, create_client
from proxy.state.team import StoreError

log = get_logger("subrelay.cooldowns")
_SEP = "\x1f"

# KEYS: the hash. ARGV: field, seconds. Keeps the later deadline; drops fields that ended.
NOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not old or old < until_ then redis.call('HSET', KEYS[1], ARGV[1], tostring(until_)) end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""

# KEYS: the hash. Returns Redis's now, then field/deadline pairs.
READ = """
local t = redis.call('TIME')
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000))
return all
"""


class RedisCooldowns(Cooldowns):
    def __init__(self, client: Redis, options: RedisOptions, poll_seconds: float = 1.0) -> None:
        super().__init__(clock=time.monotonic)
        self._redis = client
        self._timeout = options.timeout
        self._key = "{" + options.prefix + "}:cooldowns"
        self._note = client.register_script(NOTE)
        self._read = client.register_script(READ)
        self._poll = poll_seconds
        self._next_poll = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._warned = False

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str]) -> "RedisCooldowns":
        options = RedisOptions.from_env(env)
        return cls(create_client(url, options), options)

    def note(self, key: CooldownKey, seconds: float | None) -> None:
        before = self._until.get(key)
        super().note(key, seconds)
        if self._until.get(key) != before:
            self._spawn(self._push(key, self._until[key] - self._clock()))

    def remaining(self, provider: str, identity: str, model: str) -> float:
        self._maybe_pull()
        return super().remaining(provider, identity, model)

    def active(self) -> int:
        self._maybe_pull()
        return super().active()

    async def sync(self) -> None:
        """Fetch the other replicas' cooldowns now (also what the background pull does)."""
        try:
            reply = await bounded(self._read(keys=[self._key]), self._timeout)
        except StoreError as exc:
            self._warn(exc)
            return
        self._warned = False
        redis_now, local_now = float(reply[0]), self._clock()
        for index in range(1, len(reply) - 1, 2):
            parts = tuple(reply[index].decode().split(_SEP))
            left = float(reply[index + 1]) - redis_now
            if len(parts) == 3 and left > 0 and local_now + left > self._until.get(parts, 0.0):
                self._until[parts] = local_now + left

    async def ping(self) -> bool:
        """Whether Redis answers (readiness); :class:`StoreError` when it does not."""
        return bool(await bounded(self._redis.ping(), self._timeout))

    async def replication(self) -> dict:
        """Which Redis, its role and replicas (readiness and the operator view): see :mod:`.replication`."""
        from proxy.state.redis.replication import replication

        return await replication(self._redis, self._key, 0, self._timeout)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await close_client(self._redis)

    async def _push(self, key: CooldownKey, seconds: float) -> None:
        try:
            await bounded(self._note(keys=[self._key], args=[_SEP.join(key), repr(seconds)]), self._timeout)
        except StoreError as exc:
            self._warn(exc)

    def _maybe_pull(self) -> None:
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + self._poll
            self._spawn(self.sync())

    def _spawn(self, work) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop (a synchronous caller): this process keeps its own view
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _warn(self, exc: StoreError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cooldowns are not shared with the other replicas for now: %s", exc)
