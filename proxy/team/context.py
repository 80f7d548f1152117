"""Where team mode's state lives for a running server or a ``subrelay`` command: the store (local
SQLite, or Redis when ``SUBRELAY_REDIS_URL`` is set) and the secret box that seals logins."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from proxy.errors import ConfigError
from proxy.state.ledger import LedgerStore, Retention
from proxy.state.team import TeamStore
from proxy.team.secretbox import KEY_FILE, SecretBox, load_keys

STORE_FILE = "team.sqlite3"
LEDGER_FILE = "ledger.sqlite3"


def state_dir(env: Mapping[str, str]) -> str:
    """``SUBRELAY_STATE_DIR``, else ``~/.subrelay``: the team store, the secret key file."""
    return os.path.expanduser(env.get("SUBRELAY_STATE_DIR") or "~/.subrelay")


def store_path(env: Mapping[str, str]) -> str:
    return os.path.join(state_dir(env), STORE_FILE)


def store_configured(env: Mapping[str, str]) -> bool:
    """Whether team mode has a store: ``SUBRELAY_REDIS_URL``, or a team file in the state directory."""
    return bool(env.get("SUBRELAY_REDIS_URL")) or os.path.exists(store_path(env))


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


@dataclass(frozen=True, slots=True)
class LedgerOptions:
    """``SUBRELAY_LEDGER`` (``on``/``off``; unset: on in team mode), ``SUBRELAY_LEDGER_DAYS`` (90),
    ``SUBRELAY_LEDGER_MAX_ENTRIES`` (1,000,000) and ``SUBRELAY_AUDIT_DAYS`` (730). The audit log of admin
    actions is kept whatever ``SUBRELAY_LEDGER`` says: it records admins, not the people they serve."""

    requests: str  # "on", "off" or "team" (the default: on once team mode is)
    retention: Retention
    audit: Retention


def ledger_options(env: Mapping[str, str]) -> LedgerOptions:
    mode = (env.get("SUBRELAY_LEDGER") or "team").strip().lower()
    if mode not in ("on", "off", "team"):
        raise ConfigError("SUBRELAY_LEDGER must be on or off (unset: on in team mode)")
    days = _positive(env, "SUBRELAY_LEDGER_DAYS", 90.0)
    entries = _positive(env, "SUBRELAY_LEDGER_MAX_ENTRIES", 1_000_000)
    return LedgerOptions(mode, Retention(days, int(entries)), Retention(_positive(env, "SUBRELAY_AUDIT_DAYS", 730.0), None))


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not 0 < value <= 10**9:
        raise ConfigError(f"{name} must be a positive number, got {raw[:40]!r}")
    return value


def open_ledger(env: Mapping[str, str]) -> LedgerStore:
    """The ledger store: a Redis stream per log with ``SUBRELAY_REDIS_URL``, else ``ledger.sqlite3`` in the
    state directory, beside the team store."""
    redis_url = env.get("SUBRELAY_REDIS_URL")
    if redis_url:
        from proxy.state.redis.ledger import RedisLedgerStore

        options = ledger_options(env)
        return RedisLedgerStore.from_url(redis_url, env, max_entries={"requests": options.retention.max_entries})
    from proxy.state.local.ledger import SqliteLedgerStore

    return SqliteLedgerStore(os.path.join(state_dir(env), LEDGER_FILE))


@dataclass
class Team:
    """Team mode's handles, on the app state (``app.state.subrelay.team``) when a store exists."""

    store: TeamStore
    box: SecretBox
    env: Mapping[str, str] = field(default_factory=dict)
    # Where limits are reserved: the store (shared by workers and replicas), or memory for one process.
    limiter: Any = None
    seal: str = "server"  # "member": members' logins open only inside their own requests (proxy.team.member_seal)
    alerts: Any = None  # proxy.team.alerts.Alerts: webhooks for a login that needs renewing (and more)

    _ledger: LedgerStore | None = None

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = self.store

    @property
    def ledger(self) -> LedgerStore:
        """The ledger store (the request log and the audit log), opened on first use."""
        if self._ledger is None:
            self._ledger = open_ledger(self.env)
        return self._ledger

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None
        await self.store.close()


def open_team(env: Mapping[str, str], *, create: bool = False) -> Team | None:
    store = open_store(env, create=create)
    if store is None:
        return None
    directory = state_dir(env)
    key_file = None if env.get("SUBRELAY_SECRET_KEY") else os.path.join(directory, KEY_FILE)
    return Team(store=store, box=SecretBox(load_keys(env, directory), key_file=key_file), env=env)
