"""The ``previous_response_id`` record on Redis: a conversation continues on whichever replica answers.

Same interface as :class:`proxy.state.responses.ResponseStore`, which the doors call synchronously;
so this store uses a *blocking* client (one small pool per process), as the SQLite shared store does.
Each call is one round trip bounded by ``SUBRELAY_REDIS_TIMEOUT``; after a failure Redis is not asked
again for one second (a Redis that stopped answering costs each process at most one timeout per second).

Policy (the same settings as the local record, counted cluster-wide instead of per process):

- each record is the serialized conversation, ``SET … EX SUBRELAY_RESPONSE_STORE_SECONDS`` (6 h),
  under a key that names its owner's scope, so another caller's lookup simply misses (the 400 an
  unknown id gets);
- the records together stay within ``SUBRELAY_RESPONSE_STORE_BYTES`` (64 MiB): a script adds the new
  one to an index by time and drops the oldest until the total fits; a record larger than the cap is not
  kept. Redis needs that much memory on top of the team store (see the README's replica recipe).

A continuation whose record Redis cannot read answers 503 ``state_store_unavailable`` (the client may
retry); a record that cannot be written is logged and lost, as the answer has already been sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

from proxy.errors import ServiceUnavailable
from proxy.observe.redact import get_logger
from proxy.state.redis.connection import RedisOptions, create_client
from proxy.state.responses import ResponseStore, current_owner, not_found, replayable

log = get_logger("subrelay.responses")
_PAUSE_AFTER_FAILURE = 1.0

# KEYS: record, index (zset key -> stored_at), sizes (hash key -> bytes), total bytes.
# ARGV: blob, max age (s), max bytes. Prunes what expired, adds the record, drops the oldest past the cap.
PUT_RESPONSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_age, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local function forget(key)
  local size = tonumber(redis.call('HGET', KEYS[3], key)) or 0
  redis.call('HDEL', KEYS[3], key)
  redis.call('ZREM', KEYS[2], key)
  redis.call('DECRBY', KEYS[4], size)
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - max_age)) do forget(key) end
if redis.call('ZSCORE', KEYS[2], KEYS[1]) then forget(KEYS[1]) end
local size = string.len(ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', math.ceil(max_age))
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
local total = redis.call('INCRBY', KEYS[4], size)
while total > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest or oldest == KEYS[1] then break end
  redis.call('DEL', oldest)
  forget(oldest)
  total = tonumber(redis.call('GET', KEYS[4]))
end
return total
"""


class RedisResponseStore(ResponseStore):
    def __init__(self, url: str, env: Mapping[str, str], max_bytes: int = 64 * 1024 * 1024,
                 max_age_seconds: float = 6 * 3600) -> None:
        super().__init__(max_bytes, max_age_seconds, time.time)
        options = RedisOptions.from_env(env)
        self._timeout = options.timeout
        self._redis = create_client(url, options, max_connections=4, sync=True)
        self._put_script = self._redis.register_script(PUT_RESPONSE)
        self._p = "{" + options.prefix + "}:resp:"
        self._paused_until = 0.0

    def put(self, response_id: str, input_items: list[Any], output_items: list[dict[str, Any]],
            owner: str | None = None) -> None:
        blob = orjson.dumps([*input_items, *(replayable(item) for item in output_items)])
        if len(blob) > self.max_bytes:
            return
        keys = [self._key(response_id, owner or current_owner()), self._p + "index", self._p + "sizes",
                self._p + "bytes"]
        try:
            self._call(lambda: self._put_script(keys=keys, args=[blob, self.max_age, self.max_bytes]))
        except ServiceUnavailable as exc:  # the answer already reached the client: only the record is lost
            log.warning("could not record response %s for previous_response_id: %s", response_id[:40], exc)

    def history(self, response_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        blob = self._call(lambda: self._redis.get(self._key(response_id, owner or current_owner())))
        if blob is None:
            raise not_found(response_id, self)
        return orjson.loads(blob)

    def __len__(self) -> int:
        return int(self._call(lambda: self._redis.zcard(self._p + "index")))

    def close(self) -> None:
        self._redis.close()

    def _key(self, response_id: str, owner: str) -> str:
        scope = hashlib.sha256(owner.encode()).hexdigest()[:24]  # fixed length, no separator to smuggle
        return f"{self._p}{scope}:{response_id}"

    def _call(self, command):
        if time.monotonic() < self._paused_until:
            raise _unavailable("Redis failed less than a second ago")
        try:
            return command()
        except (RedisError, RedisClusterException, OSError) as exc:
            self._paused_until = time.monotonic() + _PAUSE_AFTER_FAILURE
            raise _unavailable(f"Redis is unavailable ({type(exc).__name__})") from None


def _unavailable(why: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"subrelay's state store is not answering ({why}); try again shortly.",
                              code="state_store_unavailable", headers={"Retry-After": "1"})
