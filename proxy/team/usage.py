"""Usage accounting per user, model, provider and day, batched: the request path only adds to a dict
in memory; a background task writes the sums to the store every few seconds (and at shutdown), so
accounting adds no store write to any request."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from prometheus_client import Counter

from proxy.observe.periodic import PeriodicFlush
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger
from proxy.state.team import StoreError, TeamStore, UsageRow, User

log = get_logger("subrelay.team.usage")
FLUSH_SECONDS = 2.0
MAX_USERS_IN_METRICS = 1000  # SUBRELAY_METRICS_PER_USER: bounded cardinality
# The usage row every model name no provider lists goes into (the metrics' label for them too): a
# member typing made-up names adds one row a day, not one per name, on every store backend.
UNLISTED_MODEL = "other"

USER_REQUESTS = Counter("subrelay_user_requests_total", "Requests per team user (SUBRELAY_METRICS_PER_USER=1).",
                        ["user", "status"])
USER_TOKENS = Counter("subrelay_user_tokens_total", "Tokens per team user (SUBRELAY_METRICS_PER_USER=1).",
                      ["user", "kind"])


def usage_model(record: RequestRecord) -> str:
    """The model a usage row is kept under: the one the route reached (an alias, ``codex/gpt-5.5`` and
    ``gpt-5.5`` are one row) when its provider lists it, else :data:`UNLISTED_MODEL`; the names a
    client may type are unbounded, the models the providers list are not."""
    return record.upstream_model if record.known_model else UNLISTED_MODEL


class UsageBook(PeriodicFlush):
    flush_seconds = FLUSH_SECONDS
    def __init__(self, store: TeamStore, *, per_user_metrics: bool = False) -> None:
        self.store = store
        self.per_user_metrics = per_user_metrics
        self._rows: dict[tuple[str, str, str, str], UsageRow] = {}
        self._metric_users: set[str] = set()
        self._day_at, self._day = 0, ""
        self._settles: list[tuple] = []  # (limiter, reservation, actual): settled with the next flush
        self._task: asyncio.Task | None = None

    def settle_later(self, limiter, reservation, actual: dict[str, int]) -> None:
        """Settle a reservation in the shared store with the next flush (not on the request path): the
        reservation holds its estimate a few seconds longer, never less."""
        if len(self._settles) < 100_000:
            self._settles.append((limiter, reservation, actual))

    def add(self, user: str, record: RequestRecord, cost_micros: int = 0, unpriced: bool = False) -> None:
        """Count one request of ``user`` (the person's key, :attr:`proxy.state.team.User.person`): its
        tokens and what it cost (``unpriced``: a paid route with no known price, so its cost is missing
        from the figures and says so)."""
        now = int(time.time())
        if now != self._day_at:  # the UTC day, worked out at most once a second
            self._day_at, self._day = now, time.strftime("%Y-%m-%d", time.gmtime(now))
        day = self._day
        model = record.upstream_model if record.known_model else UNLISTED_MODEL  # usage_model, inline
        key = (user, day, model, record.provider)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = UsageRow(user, day, model, record.provider)
        row.requests += 1
        row.errors += record.status >= 400 or record.status == 0
        row.cost_micros += cost_micros
        row.unpriced += unpriced
        usage = record.usage
        if usage is not None:
            row.input_tokens += usage.prompt_tokens or 0
            row.cached_tokens += usage.cached_tokens or 0
            row.output_tokens += usage.completion_tokens or 0
            row.reasoning_tokens += usage.reasoning_tokens or 0
        if self.per_user_metrics and (user in self._metric_users or len(self._metric_users) < MAX_USERS_IN_METRICS):
            self._metric_users.add(user)
            name = user.partition("~")[0]  # metrics name the user, as the admin knows them
            USER_REQUESTS.labels(name, str(record.status)).inc()
            if usage is not None:
                USER_TOKENS.labels(name, "input").inc(usage.prompt_tokens or 0)
                USER_TOKENS.labels(name, "output").inc(usage.completion_tokens or 0)

    def pending(self, user: str) -> list[UsageRow]:
        """This process's figures for ``user`` not yet written to the store."""
        return [row for key, row in self._rows.items() if key[0] == user]

    async def flush(self) -> None:
        settles, self._settles = self._settles, []
        for limiter, reservation, actual in settles:
            try:
                await limiter.settle(reservation, actual)
            except StoreError as exc:  # the reservation simply expires with its window
                log.warning("could not settle a reservation (%s)", exc)
        if not self._rows:
            return
        rows, self._rows = list(self._rows.values()), {}
        try:
            await self.store.add_usage(rows)
        except StoreError as exc:  # keep the figures for the next flush rather than lose them
            log.warning("could not write usage (%s); keeping it for the next try", exc)
            for row in rows:
                key = (row.user, row.day, row.model, row.provider)
                if key in self._rows:
                    self._rows[key].add(row)
                else:
                    self._rows[key] = row



async def person_usage(store: TeamStore, user: User, *, since: str | None = None,
                       until: str | None = None) -> list[UsageRow]:
    """``user``'s own usage rows: those kept under their person key, and those written under the bare
    name before person keys existed, from the day the user was made on (an earlier person of the same
    name kept theirs under the name too, before that day). A removed person's rows stay in the team's
    figures and are never this user's."""
    rows = await store.usage(user=user.person, since=since, until=until)
    if user.person != user.name:
        made = _made_day(user)
        legacy = await store.usage(user=user.name, since=max(since or made, made), until=until)
        rows = [*rows, *legacy]
    return rows


def shown_names(rows: list[UsageRow], users: list[User]) -> list[UsageRow]:
    """The rows with each person key turned into the name an admin knows: a current user's rows under
    their name, a removed (or replaced) person's under ``<name> (removed)``."""
    by_person = {user.person: user.name for user in users}
    by_name = {user.name: user for user in users}
    shown = []
    for row in rows:
        name = by_person.get(row.user)
        if name is None:
            bare = row.user.partition("~")[0]
            owner = by_name.get(bare) if "~" not in row.user else None  # a row from before person keys
            mine = owner is not None and row.day >= _made_day(owner)
            name = bare if mine else f"{bare} (removed)"
        shown.append(row if name == row.user else dataclasses.replace(row, user=name))
    return shown


def _made_day(user: User) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(user.created_at)) if user.created_at else ""
