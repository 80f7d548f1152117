"""The team store on Redis: replicas on several hosts share users, logins, limits and usage.

Same interface and behaviour as :mod:`proxy.state.local.team` (the conformance suite runs both). Every
step a race could break is one Lua script (:mod:`proxy.state.redis.scripts`); every call is bounded by
``SUBRELAY_REDIS_TIMEOUT`` and fails as :class:`StoreError` (:mod:`proxy.state.redis.connection`).

Keys, all under one hash tag (``{sr}`` by default) so a script may touch several::

    {sr}:users            set of user names          {sr}:u:<name>   user record (JSON)
    {sr}:k:<key hash>     the key's user name        {sr}:l:<name>   sealed login (JSON, with version)
    {sr}:lease:<key>      lease token (PX expiry)    {sr}:p:<login>  plan windows (JSON)
    {sr}:r:<limit key>    reservations by expiry     {sr}:ra:<limit key>  amounts and their total
    {sr}:usage:days       days with usage            {sr}:usage:<day>     counters per user/model/provider
    {sr}:rec:<kind>:<key> identity record (JSON, PX)  {sr}:reco:<kind>:<owner>  its owner's keys (set)

A key lookup (:meth:`RedisTeamStore.user_by_key_hash`) is one round trip, and nothing is cached, so a
revoked or rotated key fails on its next request on every replica.

The writes whose loss a person would notice — a login (a rotated refresh token is single-use), the lease
that lets one replica spend it, a user's record (key, limits, disable) and a removal — are *durable*: run,
then ``WAIT`` for ``SUBRELAY_REDIS_WAIT_REPLICAS`` replicas (1 behind Sentinel) before they count as done
(:func:`proxy.state.redis.connection.durable`). Reservations, usage and device logins in progress are not:
a failover may lose their last moments (docs/redis-ha.md says how much).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from redis.asyncio import Redis

from proxy.state.redis import scripts
from proxy.state.redis.connection import RedisOptions, bounded, close_client, create_client, durable
from proxy.state.redis.replication import replication
from proxy.state.team import (
    OWNER_LOGIN,
    USAGE_FIELDS,
    Admitted,
    LimitRule,
    Refusal,
    Reservation,
    StoredLogin,
    TeamStore,
    UsageRow,
    User,
    UserExists,
)


class RedisTeamStore(TeamStore):
    def __init__(self, client: Redis, options: RedisOptions | None = None) -> None:
        self.options = options or RedisOptions()
        self._redis = client
        self._timeout = self.options.timeout
        self._p = "{" + self.options.prefix + "}:"
        self._scripts = {name: client.register_script(getattr(scripts, name)) for name in (
            "ADD_USER", "SAVE_USER", "REMOVE_USER", "USER_BY_KEY", "PUT_LOGIN", "ACQUIRE_LEASE", "RELEASE_LEASE",
            "RESERVE", "SETTLE", "ADMIT", "OWNER_STATE")}
        target = getattr(client, "subrelay_target", None)
        self.wait_replicas = self.options.replicas_for(target) if target is not None else (
            self.options.wait_replicas or 0)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str]) -> "RedisTeamStore":
        """A store on its own bounded pool; nothing connects until the first call."""
        options = RedisOptions.from_env(env)
        return cls(create_client(url, options), options)

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await bounded(self._scripts[script](keys=keys, args=args), self._timeout)

    async def _run_durable(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """``_run``, then WAIT for the replicas: done only once a failover cannot lose it."""
        if not self.wait_replicas:
            return await self._run(script, keys, args)
        return await durable(self._redis, keys[0], ("EVAL", getattr(scripts, script), len(keys), *keys, *args),
                             self.wait_replicas, self.options.wait_ms, self._timeout)

    # -- users and keys ------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        outcome = await self._run_durable("ADD_USER", [self._p + "users", self._p + "u:" + user.name,
                                               self._p + "k:" + user.key_hash], [user.name, _user_json(user)])
        if outcome == b"name":
            raise UserExists(f"A user named {user.name!r} exists already.")
        if outcome == b"key":
            raise UserExists("Another user has that key already.")

    async def get_user(self, name: str) -> User | None:
        raw = await bounded(self._redis.get(self._p + "u:" + name), self._timeout)
        return _user(raw) if raw else None

    async def list_users(self) -> list[User]:
        names = await bounded(self._redis.smembers(self._p + "users"), self._timeout)
        if not names:
            return []
        records = await bounded(self._redis.mget([self._p + "u:" + n.decode() for n in names]), self._timeout)
        return sorted((_user(raw) for raw in records if raw), key=lambda user: user.name)

    async def save_user(self, user: User) -> None:
        outcome = await self._run_durable("SAVE_USER", [self._p + "u:" + user.name, self._p + "k:" + user.key_hash],
                                  [user.name, _user_json(user), self._p + "k:"])
        if outcome == -1:
            raise UserExists("Another user has that key already.")

    async def remove_user(self, name: str) -> bool:
        return bool(await self._run_durable("REMOVE_USER", [self._p + "users", self._p + "u:" + name, self._p + "l:" + name],
                                    [name, self._p + "k:"]))

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        raw = await self._run("USER_BY_KEY", [self._p + "k:" + key_hash], [self._p + "u:"])
        return _user(raw) if raw else None

    async def owner_state(self) -> tuple[bool, StoredLogin | None]:
        has, raw = await self._run("OWNER_STATE", [self._p + "users", self._p + "l:" + OWNER_LOGIN], [])
        return bool(has), StoredLogin(**_known(StoredLogin, orjson.loads(raw))) if raw else None

    async def has_users(self) -> bool:
        return bool(await bounded(self._redis.exists(self._p + "users"), self._timeout))

    # -- logins --------------------------------------------------------------------------------
    async def get_login(self, name: str) -> StoredLogin | None:
        raw = await bounded(self._redis.get(self._p + "l:" + name), self._timeout)
        return StoredLogin(**_known(StoredLogin, orjson.loads(raw))) if raw else None

    async def put_login(self, name: str, login: StoredLogin, *, expected_version: int | None) -> bool:
        record = {"sealed": login.sealed, "version": login.version, "account_id": login.account_id,
                  "email": login.email, "plan_type": login.plan_type, "needs_login": login.needs_login,
                  "updated_at": login.updated_at or time.time()}
        expected = "" if expected_version is None else str(int(expected_version))
        return bool(await self._run_durable("PUT_LOGIN", [self._p + "u:" + name, self._p + "l:" + name],
                                    [expected, orjson.dumps(record), "1" if name == OWNER_LOGIN else "0"]))

    async def delete_login(self, name: str) -> bool:
        key = self._p + "l:" + name
        return bool(await durable(self._redis, key, ("DEL", key), self.wait_replicas, self.options.wait_ms,
                                  self._timeout))

    async def acquire_lease(self, key: str, token: str, ttl: float) -> bool:
        return bool(await self._run_durable("ACQUIRE_LEASE", [self._p + "lease:" + key], [token, max(int(ttl * 1000), 1)]))

    async def release_lease(self, key: str, token: str) -> None:
        await self._run("RELEASE_LEASE", [self._p + "lease:" + key], [token])

    # -- limits --------------------------------------------------------------------------------
    async def reserve(self, rules: list[LimitRule]) -> Reservation | Refusal:
        reservation_id = uuid.uuid4().hex
        if not rules:
            return Reservation(reservation_id, ())
        keys: list[str] = []
        args: list[Any] = [reservation_id]
        for rule in rules:
            keys += [self._p + "r:" + rule.key, self._p + "ra:" + rule.key]
            args += [int(rule.limit), repr(float(rule.window)), int(rule.amount)]
        outcome = await self._run("RESERVE", keys, args)
        if int(outcome[0]) == 0:
            return Refusal(rules[int(outcome[1]) - 1].key, float(outcome[2]), int(outcome[3]))
        now = float(outcome[1])  # Redis time: expiries are on the server's clock
        return Reservation(reservation_id, tuple((rule.key, rule.amount, now + rule.window) for rule in rules),
                           tuple(int(total) for total in outcome[2]))

    async def settle(self, reservation: Reservation, actual: dict[str, int]) -> None:
        keys: list[str] = []
        args: list[Any] = [reservation.id]
        for key, _, _ in reservation.parts:
            if key in actual:
                keys += [self._p + "r:" + key, self._p + "ra:" + key]
                args.append(max(int(actual[key]), 0))
        if keys:
            await self._run("SETTLE", keys, args)

    # -- pending device logins -----------------------------------------------------------------
    async def put_pending(self, handle: str, sealed: str, owner: str, expires_at: float) -> None:
        ttl = max(int((expires_at - time.time()) * 1000), 1)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._p + "pend:" + handle, orjson.dumps({"sealed": sealed, "owner": owner}), px=ttl)
        pipe.zadd(self._p + "pending", {handle: expires_at})
        pipe.zremrangebyscore(self._p + "pending", "-inf", time.time())
        await bounded(pipe.execute(), self._timeout)

    async def get_pending(self, handle: str) -> tuple[str, str] | None:
        raw = await bounded(self._redis.get(self._p + "pend:" + handle), self._timeout)
        if not raw:
            return None
        record = orjson.loads(raw)
        return record["sealed"], record["owner"]

    async def delete_pending(self, handle: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._p + "pend:" + handle)
        pipe.zrem(self._p + "pending", handle)
        await bounded(pipe.execute(), self._timeout)

    async def count_pending(self) -> int:
        return int(await bounded(self._redis.zcount(self._p + "pending", time.time(), "+inf"), self._timeout))

    async def clear_pending(self, owner: str) -> int:
        handles = [h.decode() for h in await bounded(self._redis.zrange(self._p + "pending", 0, -1), self._timeout)]
        cleared = 0
        for handle in handles:
            found = await self.get_pending(handle)
            if found is not None and found[1] == owner:
                await self.delete_pending(handle)
                cleared += 1
        return cleared

    # -- identity records ----------------------------------------------------------------------
    async def put_record(self, kind: str, key: str, value: bytes, owner: str, expires_at: float | None) -> None:
        if expires_at is not None and expires_at <= time.time():
            await self.delete_record(kind, key)  # already over: nothing to keep
            return
        record = orjson.dumps({"value": value.decode("latin-1"), "owner": owner})
        pipe = self._redis.pipeline(transaction=True)
        if expires_at is None:
            pipe.set(self._p + f"rec:{kind}:{key}", record)
        else:
            pipe.set(self._p + f"rec:{kind}:{key}", record, px=max(int((expires_at - time.time()) * 1000), 1))
        if owner:  # no owner (a sign-in in progress): nothing will ask for it by owner, so no index to grow
            pipe.sadd(self._p + f"reco:{kind}:{owner}", key)
            pipe.scard(self._p + f"reco:{kind}:{owner}")
        done = await bounded(pipe.execute(), self._timeout)
        if owner and done[-1] > 64:  # expired records leave their key in the index: prune now and then
            await self.records_of(kind, owner)

    async def get_record(self, kind: str, key: str) -> tuple[bytes, str] | None:
        raw = await bounded(self._redis.get(self._p + f"rec:{kind}:{key}"), self._timeout)
        if not raw:
            return None
        record = orjson.loads(raw)
        return record["value"].encode("latin-1"), record["owner"]

    async def delete_record(self, kind: str, key: str) -> bool:
        found = await self.get_record(kind, key)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._p + f"rec:{kind}:{key}")
        if found is not None and found[1]:
            pipe.srem(self._p + f"reco:{kind}:{found[1]}", key)
        return bool((await bounded(pipe.execute(), self._timeout))[0])

    async def records_of(self, kind: str, owner: str) -> list[tuple[str, bytes]]:
        keys = sorted(k.decode() for k in await bounded(self._redis.smembers(self._p + f"reco:{kind}:{owner}"),
                                                         self._timeout))
        if not keys:
            return []
        raws = await bounded(self._redis.mget([self._p + f"rec:{kind}:{key}" for key in keys]), self._timeout)
        found, gone = [], []
        for key, raw in zip(keys, raws):
            record = orjson.loads(raw) if raw else None
            if record is None or record["owner"] != owner:
                gone.append(key)  # expired (or moved to another owner): drop it from the owner's index
            else:
                found.append((key, record["value"].encode("latin-1")))
        if gone:
            await bounded(self._redis.srem(self._p + f"reco:{kind}:{owner}", *gone), self._timeout)
        return found

    async def delete_records_of(self, kind: str, owner: str) -> int:
        held = await self.records_of(kind, owner)
        pipe = self._redis.pipeline(transaction=True)
        for key, _ in held:
            pipe.delete(self._p + f"rec:{kind}:{key}")
        pipe.delete(self._p + f"reco:{kind}:{owner}")
        await bounded(pipe.execute(), self._timeout)
        return len(held)

    # -- the common path in one round trip -----------------------------------------------------------
    remote = True

    async def admit(self, key_hash: str, name: str, generation: int, rules: list[LimitRule]) -> Admitted:
        reservation_id = uuid.uuid4().hex
        keys = [self._p + "k:" + key_hash, self._p + "u:" + name, self._p + "l:" + name]
        args: list[Any] = [name, str(int(generation)), self._p + "p:", reservation_id]
        for rule in rules:
            keys += [self._p + "r:" + rule.key, self._p + "ra:" + rule.key]
            args += [int(rule.limit), repr(float(rule.window)), int(rule.amount)]
        outcome = await self._run("ADMIT", keys, args)
        verdict = outcome[0]
        if verdict == b"stale":
            return Admitted("stale")
        if verdict == b"refused":
            return Admitted("refused", refusal=Refusal(rules[int(outcome[1]) - 1].key, float(outcome[2]),
                                                       int(outcome[3])))
        now = float(outcome[1])
        reservation = Reservation(reservation_id, tuple((r.key, r.amount, now + r.window) for r in rules),
                                  tuple(int(total) for total in outcome[4]) if len(outcome) > 4 else ())
        login = orjson.loads(outcome[2]) if outcome[2] else None
        windows = orjson.loads(outcome[3]) if outcome[3] else None
        return Admitted("ok", reservation, None, login.get("version") if login else None,
                        login.get("account_id") if login else None, windows)

    # -- plan windows --------------------------------------------------------------------------
    async def put_plan_windows(self, login_key: str, windows: dict[str, Any]) -> None:
        await bounded(self._redis.set(self._p + "p:" + login_key, orjson.dumps(windows)), self._timeout)

    async def get_plan_windows(self, login_key: str) -> dict[str, Any] | None:
        raw = await bounded(self._redis.get(self._p + "p:" + login_key), self._timeout)
        return orjson.loads(raw) if raw else None

    # -- usage ---------------------------------------------------------------------------------
    async def add_usage(self, rows: list[UsageRow]) -> None:
        """One MULTI/EXEC for the whole batch: all of it counts, or none."""
        if not rows:
            return
        pipe = self._redis.pipeline(transaction=True)
        for row in rows:
            pipe.sadd(self._p + "usage:days", row.day)
            for name in USAGE_FIELDS:
                value = int(getattr(row, name))
                if value:
                    pipe.hincrby(self._p + "usage:" + row.day, _usage_field(row, name), value)
            # a row of zeros still shows the user used that model that day
            pipe.hincrby(self._p + "usage:" + row.day, _usage_field(row, "requests"), 0)
        await bounded(pipe.execute(), self._timeout)

    async def usage(self, *, user: str | None = None, since: str | None = None,
                    until: str | None = None) -> list[UsageRow]:
        days = sorted(d.decode() for d in await bounded(self._redis.smembers(self._p + "usage:days"), self._timeout))
        days = [d for d in days if (since is None or d >= since) and (until is None or d <= until)]
        if not days:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self._p + "usage:" + day)
        tables = await bounded(pipe.execute(), self._timeout)
        rows: dict[tuple[str, str, str, str], UsageRow] = {}
        for day, table in zip(days, tables):
            for field, value in table.items():
                who, model, provider, name = orjson.loads(field)
                if user is not None and who != user:
                    continue
                row = rows.setdefault((day, who, model, provider), UsageRow(who, day, model, provider))
                setattr(row, name, int(value))
        return [rows[k] for k in sorted(rows)]

    # -- lifecycle -----------------------------------------------------------------------------
    async def ping(self) -> bool:
        return bool(await bounded(self._redis.ping(), self._timeout))

    async def replication(self) -> dict[str, Any]:
        """Which Redis this store writes to (primary address, role, replicas and their lag): the operator view."""
        return await replication(self._redis, self._p + "users", self.wait_replicas, self._timeout)

    async def close(self) -> None:
        await close_client(self._redis)


def _usage_field(row: UsageRow, name: str) -> bytes:
    return orjson.dumps([row.user, row.model, row.provider, name])


def _user_json(user: User) -> bytes:
    return orjson.dumps({"name": user.name, "key_hash": user.key_hash, "key_id": user.key_id,
                         "models": list(user.models), "rpm": user.rpm, "tpm": user.tpm,
                         "daily_tokens": user.daily_tokens, "fallback": user.fallback, "disabled": user.disabled,
                         "created_at": user.created_at, "generation": user.generation,
                         "model_limits": user.model_limits, "budgets": user.budgets, "max_effort": user.max_effort,
                         "max_concurrent": user.max_concurrent})


def _user(raw: bytes) -> User:
    record = _known(User, orjson.loads(raw))
    record["models"] = tuple(record.get("models") or ())
    return User(**record)


def _known(kind: type, record: dict[str, Any]) -> dict[str, Any]:
    """The fields ``kind`` has: a record written by a newer replica still reads on an older one."""
    return {name: value for name, value in record.items() if name in kind.__dataclass_fields__}
