"""``subrelay migrate-state --to redis://…``: this host's team store (SQLite in SUBRELAY_STATE_DIR)
copied into Redis, and what the replicas then need (the same SUBRELAY_SECRET_KEY)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson

from proxy.errors import ConfigError
from proxy.state.team import StoreError


def migrate_state(target_url: str, env: Mapping[str, str]) -> int:
    from proxy.team.context import store_path

    path = store_path(env)
    if not os.path.exists(path):
        print(f"subrelay: no local team store at {path} (set SUBRELAY_STATE_DIR to where it is)", file=sys.stderr)
        return 2
    try:
        copied = asyncio.run(_copy(path, target_url, env))
    except ConfigError as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 2
    where = urlsplit(target_url).hostname or "redis"  # never the URL itself: it may carry the password
    print(f"Copied {copied.users} user(s), {copied.logins} login(s), {copied.usage_rows} usage row(s) and "
          f"{copied.plan_windows} plan window(s) from {path} to Redis at {where}.")
    _say_which_key(copied.login_key_ids, env)
    print("Set SUBRELAY_REDIS_URL to that URL on every replica (and the same SUBRELAY_SECRET_KEY).")
    return 0


async def _copy(path: str, target_url: str, env: Mapping[str, str]):
    from proxy.state.local.team import SqliteTeamStore
    from proxy.state.migrate import copy_store
    from proxy.state.redis.team import RedisTeamStore

    source = SqliteTeamStore(path)
    target = RedisTeamStore.from_url(target_url, env)
    try:
        windows = {key: orjson.loads(data) for key, data in source._all("SELECT login_key, data FROM plan_windows", ())}
        return await copy_store(source, target, windows)
    finally:
        await source.close()
        await target.close()


def _say_which_key(sealed_with: set[str], env: Mapping[str, str]) -> None:
    """The logins stay sealed: name the key that opens them (by id, never the key)."""
    if not sealed_with:
        return
    from proxy.team.secretbox import KEY_FILE, SecretKeyError, key_id, parse_secret

    ids = ", ".join(sorted(sealed_with))
    configured = env.get("SUBRELAY_SECRET_KEY")
    try:
        current = key_id(parse_secret(configured)) if configured else None
    except SecretKeyError:
        current = None
    if current is not None and current in sealed_with:
        print(f"The logins are sealed with SUBRELAY_SECRET_KEY (key id {current}): give the replicas the same value.")
        return
    from proxy.team.context import state_dir

    print(f"The logins are sealed with secret key id {ids}: set SUBRELAY_SECRET_KEY on every replica to the key in "
          f"{os.path.join(state_dir(env), KEY_FILE)} (the value whose id is {ids}), or they cannot be opened.")
