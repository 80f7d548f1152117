"""What only the Redis backend can get wrong: a Redis that stops answering, a Redis restarted under a
running store, and what its connection options promise."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from proxy.errors import ConfigError
from proxy.state.redis.connection import RedisOptions, create_client
from proxy.state.redis.team import RedisTeamStore
from proxy.state.team import LimitRule, Reservation, StoredLogin, StoreError, User, UserExists


def _user(name: str, key_hash: str) -> User:
    return User(name=name, key_hash=key_hash, key_id=key_hash[:12], created_at=1.0)


async def test_a_stopped_redis_fails_each_call_as_store_error_within_the_timeout_and_recovers(own_redis):
    store = RedisTeamStore.from_url(own_redis.url, {"SUBRELAY_REDIS_TIMEOUT": "0.5"})
    await store.add_user(_user("alice", "a" * 64))
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as failure:
        await store.user_by_key_hash("a" * 64)
    assert time.monotonic() - started < 2.0
    assert own_redis.password not in str(failure.value)
    own_redis.start()  # same port, same data directory: the AOF brings alice back
    assert (await store.user_by_key_hash("a" * 64)).name == "alice"  # scripts reloaded, no restart
    await store.close()


async def test_a_redis_that_accepts_but_never_answers_fails_within_the_timeout():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel; nothing ever replies
    store = RedisTeamStore.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", {"SUBRELAY_REDIS_TIMEOUT": "0.4"})
    started = time.monotonic()
    with pytest.raises(StoreError, match="within 0.4 s"):
        await store.has_users()
    assert time.monotonic() - started < 1.5
    await store.close()
    silent.close()


async def test_an_unreachable_redis_is_not_ready(own_redis):
    store = RedisTeamStore.from_url(own_redis.url, {"SUBRELAY_REDIS_TIMEOUT": "0.3"})
    assert await store.ping()
    own_redis.stop()
    with pytest.raises(StoreError) as failure:
        await store.ping()
    assert own_redis.password not in str(failure.value)
    await store.close()


async def test_a_login_saved_before_redis_is_killed_is_there_after_its_restart(own_redis):
    store = RedisTeamStore.from_url(own_redis.url, {})
    await store.add_user(_user("bob", "b" * 64))
    assert await store.put_login("bob", StoredLogin("sealed-v2", 2), expected_version=None)
    own_redis.stop(kill=True)  # SIGKILL: only what appendfsync always wrote survives
    own_redis.start()
    assert (await store.get_login("bob")).sealed == "sealed-v2"
    await store.close()


async def test_a_key_hash_taken_by_another_user_is_refused_on_add_and_on_save(own_redis):
    store = RedisTeamStore.from_url(own_redis.url, {})
    await store.add_user(_user("alice", "a" * 64))
    with pytest.raises(UserExists):
        await store.add_user(_user("carol", "a" * 64))
    bob = _user("bob", "b" * 64)
    await store.add_user(bob)
    bob.key_hash = "a" * 64
    with pytest.raises(UserExists):
        await store.save_user(bob)
    assert (await store.user_by_key_hash("b" * 64)).name == "bob"
    assert (await store.user_by_key_hash("a" * 64)).name == "alice"
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    await store.close()


async def test_limits_are_timed_by_redis_so_two_stores_share_one_window(own_redis):
    first, second = (RedisTeamStore.from_url(own_redis.url, {}) for _ in range(2))
    rule = [LimitRule("dave:rpm", limit=4, window=60, amount=1)]
    results = await asyncio.gather(*(store.reserve(rule) for store in (first, second) for _ in range(6)))
    assert sum(isinstance(r, Reservation) for r in results) == 4
    await first.close()
    await second.close()


def test_the_pool_is_bounded_and_every_wait_has_a_timeout():
    client = create_client("redis://127.0.0.1:1/0?socket_keepalive=true", RedisOptions(timeout=1.5, max_connections=7))
    pool = client.connection_pool
    assert pool.max_connections == 7 and pool.timeout == 1.5
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    assert pool.connection_kwargs["socket_connect_timeout"] == 1.5
    assert pool.connection_kwargs["health_check_interval"] == 30


@pytest.mark.parametrize("env", [{"SUBRELAY_REDIS_TIMEOUT": "never"}, {"SUBRELAY_REDIS_TIMEOUT": "0"},
                                 {"SUBRELAY_REDIS_MAX_CONNECTIONS": "0"}, {"SUBRELAY_REDIS_PREFIX": "a b"}])
def test_bad_redis_settings_are_refused_at_start(env):
    with pytest.raises(ConfigError):
        RedisOptions.from_env(env)


def test_a_url_that_is_not_redis_is_refused():
    with pytest.raises(ConfigError):
        create_client("http://127.0.0.1:6379", RedisOptions())
