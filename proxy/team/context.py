"""Where team mode's state lives for a running server or a ``subrelay`` command: the store (local
SQLite, or Redis when ``SUBRELAY_REDIS_URL`` is set) and the secret box that seals logins."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from proxy.state.team import TeamStore
from proxy.team.secretbox import SecretBox, load_keys

STORE_FILE = "team.sqlite3"


def state_dir(env: Mapping[str, str]) -> str:
    """``SUBRELAY_STATE_DIR``, else ``~/.subrelay``: the team store, the secret key file."""
    return os.path.expanduser(env.get("SUBRELAY_STATE_DIR") or "~/.subrelay")


def store_path(env: Mapping[str, str]) -> str:
    return os.path.join(state_dir(env), STORE_FILE)


def open_store(env: Mapping[str, str], *, create: bool) -> TeamStore | None:
    """The team store, or None when there is none yet and ``create`` is false (single-user mode:
    no file appears until someone runs ``subrelay users add``)."""
    redis_url = env.get("SUBRELAY_REDIS_URL")
    if redis_url:
        from proxy.state.redis.team import RedisTeamStore  # only with SUBRELAY_REDIS_URL

        return RedisTeamStore.from_url(redis_url, env)
    path = store_path(env)
    if not create and not os.path.exists(path):
        return None
    from proxy.state.local.team import SqliteTeamStore

    return SqliteTeamStore(path)


@dataclass
class Team:
    """Team mode's handles, on the app state (``app.state.subrelay.team``) when a store exists."""

    store: TeamStore
    box: SecretBox
    env: Mapping[str, str] = field(default_factory=dict)
    # Where limits are reserved: the store (shared by workers and replicas), or memory for one process.
    limiter: Any = None
    seal: str = "server"  # "member": members' logins open only inside their own requests (proxy.team.member_seal)

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = self.store


def open_team(env: Mapping[str, str], *, create: bool = False) -> Team | None:
    store = open_store(env, create=create)
    if store is None:
        return None
    return Team(store=store, box=SecretBox(load_keys(env, state_dir(env))), env=env)
