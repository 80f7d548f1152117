"""``subrelay migrate-state --to redis://…``: this host's team store (SQLite in SUBRELAY_STATE_DIR)
copied into Redis, with every login re-sealed under the key the replicas get.

The replica recipe sets a new ``SUBRELAY_SECRET_KEY`` (``subrelay secret``) before migrating, while the
existing logins are sealed with the key file beside the store: copied as they were, no replica could
open any of them. So the copy opens each login with every key this host knows (the key file,
``SUBRELAY_SECRET_KEY`` and ``_PREVIOUS``) and seals it under ``SUBRELAY_SECRET_KEY`` (or, when that is
not set, the key file's key, which the replicas then need), and the store's key check with them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import orjson

from proxy.errors import ConfigError
from proxy.state.team import StoredLogin, StoreError


@dataclass
class Resealing:
    """What the copy did to the logins' seals: re-sealed, already under the target key, or unopenable."""

    box: object  # proxy.team.secretbox.SecretBox: the target key first, then every other key known here
    from_env: bool  # the target key is SUBRELAY_SECRET_KEY (else the key file's)
    resealed: int = 0
    unopenable: dict[str, str] = field(default_factory=dict)  # user -> the key id their login is sealed with

    def __call__(self, name: str, login: StoredLogin) -> StoredLogin:
        from proxy.team.secretbox import SecretKeyError, login_context

        box = self.box
        if box.sealed_with_current(login.sealed):
            return login
        try:
            plaintext = box.open(login.sealed, context=login_context(name))
        except SecretKeyError:
            self.unopenable[name] = login.sealed.split(".", 2)[1] if login.sealed.count(".") >= 2 else "?"
            return login
        self.resealed += 1
        return replace(login, sealed=box.seal(plaintext, context=login_context(name)))


def migrate_state(target_url: str, env: Mapping[str, str]) -> int:
    from proxy.team.context import store_path

    path = store_path(env)
    if not os.path.exists(path):
        print(f"subrelay: no local team store at {path} (set SUBRELAY_STATE_DIR to where it is)", file=sys.stderr)
        return 2
    try:
        resealing = _resealing(env)
        copied = asyncio.run(_copy(path, target_url, env, resealing))
    except ConfigError as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 2
    where = urlsplit(target_url).hostname or "redis"  # never the URL itself: it may carry the password
    print(f"Copied {copied.users} user(s), {copied.logins} login(s), {copied.usage_rows} usage row(s) and "
          f"{copied.plan_windows} plan window(s) from {path} to Redis at {where}.")
    _say_which_key(resealing, env)
    print("Set SUBRELAY_REDIS_URL to that URL on every replica (and the same SUBRELAY_SECRET_KEY).")
    return 0


def _resealing(env: Mapping[str, str]):
    """The box the copy seals with: ``SUBRELAY_SECRET_KEY`` first (else the key file's key), every other
    key this host has after it. No key file is created here."""
    from proxy.team.context import state_dir
    from proxy.team.secretbox import KEY_FILE, SecretBox, SecretKeyError, load_keys

    directory = state_dir(env)
    keys = []
    try:
        if env.get("SUBRELAY_SECRET_KEY"):
            keys += load_keys(env, directory)
        if os.path.exists(os.path.join(directory, KEY_FILE)):
            keys += [key for key in load_keys({}, directory) if key not in keys]
        if not keys:
            keys = load_keys({}, directory)  # no key anywhere: the replicas will need this new file's
    except SecretKeyError as exc:
        raise ConfigError(str(exc)) from None
    return Resealing(SecretBox(keys), from_env=bool(env.get("SUBRELAY_SECRET_KEY")))


async def _copy(path: str, target_url: str, env: Mapping[str, str], resealing: Resealing):
    from proxy.state.local.team import SqliteTeamStore
    from proxy.state.migrate import copy_store
    from proxy.state.redis.team import RedisTeamStore
    from proxy.team.key_check import reseal_key_check

    source = SqliteTeamStore(path)
    target = RedisTeamStore.from_url(target_url, env)
    try:
        windows = {key: orjson.loads(data) for key, data in source._all("SELECT login_key, data FROM plan_windows", ())}
        copied = await copy_store(source, target, windows, reseal=resealing)
        await reseal_key_check(target, resealing.box)  # the replicas' readiness check: under the same key
        return copied
    finally:
        await source.close()
        await target.close()


def _say_which_key(resealing: Resealing, env: Mapping[str, str]) -> None:
    """Which key opens the copied logins (by id, never the key), and which could not be carried over."""
    from proxy.team.context import state_dir
    from proxy.team.secretbox import KEY_FILE

    current = resealing.box.current
    if resealing.from_env:
        print(f"The logins are sealed with SUBRELAY_SECRET_KEY (key id {current}"
              f"{f'; {resealing.resealed} re-sealed from the key file' if resealing.resealed else ''}): "
              "give the replicas the same value.")
    else:
        print(f"The logins are sealed with the key in {os.path.join(state_dir(env), KEY_FILE)} (key id {current}): "
              "set SUBRELAY_SECRET_KEY on every replica to that file's value, or they cannot be opened "
              "(or set SUBRELAY_SECRET_KEY before migrating: the logins are then re-sealed under it).")
    if resealing.unopenable:
        names = ", ".join(sorted(resealing.unopenable))
        ids = ", ".join(sorted(set(resealing.unopenable.values())))
        print(f"{len(resealing.unopenable)} login(s) ({names}) are sealed with key id {ids}, which neither the key "
              "file nor SUBRELAY_SECRET_KEY opens: they were copied as they are, and those members sign in again "
              "unless the replicas get that key (SUBRELAY_SECRET_KEY_PREVIOUS).")
