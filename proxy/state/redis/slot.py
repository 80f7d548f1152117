"""A shared slot on Redis (:class:`proxy.state.slots.SharedSlot`): the replicas of several hosts agree on
one live model catalogue, and one of them at a time (a lease with an expiry, released by compare-and-delete)
reads the vendor for all."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from redis.asyncio import Redis

from proxy.state.redis.connection import RedisOptions, bounded, close_client, create_client
from proxy.state.redis.scripts import RELEASE_LEASE

TURN_MS = 60_000  # a holder that dies frees its turn after this


class RedisSlot:
    def __init__(self, client: Redis, options: RedisOptions, name: str) -> None:
        self._redis = client
        self._timeout = options.timeout
        self.key = "{" + options.prefix + "}:slot:" + name
        self._release = client.register_script(RELEASE_LEASE)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str], name: str) -> "RedisSlot":
        options = RedisOptions.from_env(env)
        return cls(create_client(url, options), options, name)

    async def stamp(self) -> Any:
        return await bounded(self._redis.get(self.key + ":v"), self._timeout)

    async def read(self) -> bytes | None:
        return await bounded(self._redis.get(self.key), self._timeout)

    async def write(self, record: dict[str, Any]) -> Any:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self.key, orjson.dumps(record))
        pipe.incr(self.key + ":v")
        _, version = await bounded(pipe.execute(), self._timeout)
        return str(version).encode()  # as stamp() reads it back

    async def try_lock(self) -> str | None:
        token = uuid.uuid4().hex
        taken = await bounded(self._redis.set(self.key + ":turn", token, nx=True, px=TURN_MS), self._timeout)
        return token if taken else None

    async def unlock(self, token: str) -> None:
        await bounded(self._release(keys=[self.key + ":turn"], args=[token]), self._timeout)
