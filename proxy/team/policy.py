"""What team mode decides for one user's request, at the one place every door opens an answer
(:func:`proxy.upstream.dispatch.open_with_fallbacks`): the model allow-list, the limits (checked and
reserved atomically *before* sending; settled from the reported usage afterwards), the quota-aware
fallback, and the plan windows the answer reports.

**Quota-aware fallback** (opt-in per user): every Codex answer carries the plan's window usage
(``x-codex-primary-used-percent`` …). Once either window of the user's *own* login is at or above
``fallback_at_percent`` (until it resets), a request whose first route is that login goes to the
configured fallback (e.g. the team's API key) *before* sending, never to another person's login.
Users who have not opted in keep to their first route: the team's keys are not spent for them.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Any

from proxy.errors import AuthenticationFailed, PermissionDenied, RateLimited
from dataclasses import replace

from proxy.hub.effort import cap_effort, lower_effort
from proxy.hub.events import Usage
from proxy.hub.plain import PlainRequest
from proxy.money.prices import dollars
from proxy.observe.ledger import PLAIN_PATHS
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger
from proxy.state.team import LimitRule, Refusal, Reservation, StoreError, User
from proxy.team.context import Team
from proxy.team.unavailable import store_unavailable
from proxy.team.ladder import rung
from proxy.team.spend import BudgetRule, Money, budget_rules, crossed, refusal_error, settled_amounts, spent
from proxy.team.usage import UsageBook

log = get_logger("subrelay.team")
OUTPUT_ESTIMATE = 1024  # tokens reserved for the answer when the request sets no maximum
MAX_OUTPUT_ESTIMATE = 8192  # a bounded estimate: a huge max_tokens does not lock a person out
_WINDOW_HEADERS = ("primary", "secondary")
# The doors' model endpoints: a request to one is usage even when it fails before reaching a model.
MODEL_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses",
                         "/v1/responses/compact", "/v1/messages", "/backend-api/codex/responses",
                         "/backend-api/codex/responses/compact", *PLAIN_PATHS})


def estimate_tokens(request: Any) -> tuple[int, int]:
    """(input, output) tokens to reserve: a byte count of the request, and its output cap, bounded (a
    plain endpoint's request says its own: an embedding's input, no output)."""
    if type(request) is PlainRequest:
        return request.token_estimate
    inbound = getattr(request, "inbound", None)
    raw = getattr(inbound, "raw", b"") or b""
    asked = getattr(request, "max_output_tokens", None)
    output = asked if (type(asked) is int or isinstance(asked, int)) and asked > 0 else OUTPUT_ESTIMATE
    return len(raw) // 4 + 1, output if output < MAX_OUTPUT_ESTIMATE else MAX_OUTPUT_ESTIMATE


FRAME_OVERHEAD = 160  # bytes of an answer stream's delta frame that are not text (ids, types, JSON)


def delivered_tokens(record: RequestRecord) -> int:
    """Output tokens a stream delivered before its usage arrived: one per data frame (every vendor
    streams a token or a few per delta), plus a token per 4 bytes beyond a frame's usual framing (a
    frame carrying a long text or a tool call's arguments at once)."""
    frames, size = record.relayed_frames, record.relayed_bytes
    return frames + max(size - FRAME_OVERHEAD * frames, 0) // 4


def plan_windows(headers) -> dict[str, Any] | None:
    """The plan's windows from a Codex answer's ``x-codex-*`` headers (None when it carries none)."""
    windows: dict[str, Any] = {}
    for name in _WINDOW_HEADERS:
        used = headers.get(f"x-codex-{name}-used-percent")
        if used is None:
            continue
        try:
            entry: dict[str, Any] = {"used_percent": float(used)}
        except ValueError:
            continue
        for suffix, key in (("reset-at", "reset_at"), ("reset-after-seconds", "reset_after_seconds"),
                            ("window-minutes", "window_minutes")):
            value = headers.get(f"x-codex-{name}-{suffix}")
            if value is not None:
                try:
                    entry[key] = float(value)
                except ValueError:
                    pass
        if "reset_at" not in entry and "reset_after_seconds" in entry:
            entry["reset_at"] = time.time() + entry["reset_after_seconds"]
        windows[name] = entry
    return windows or None


def full_window(windows: dict[str, Any] | None, threshold: float, now: float) -> str | None:
    """The first window at or above ``threshold`` that has not reset yet, e.g. ``"primary 97%"``."""
    for name in _WINDOW_HEADERS:
        entry = (windows or {}).get(name)
        if not entry or entry.get("used_percent", 0) < threshold:
            continue
        reset_at = entry.get("reset_at")
        if reset_at is not None and reset_at <= now:
            continue
        return f"{name} window {entry['used_percent']:g}% used"
    return None


@dataclass(init=False)
class Admission:
    """One user request's passage through team mode (made by the edge once the user is known).

    Made for every request: ``__init__`` sets what the edge passes; every other field reads the class's
    default until a step sets it."""

    team: Team
    user: User
    book: UsageBook
    threshold: float
    gate: Any = None  # the TeamGate (to forget a cached key found stale)
    reservation: Reservation | None = None
    estimate: tuple[int, int] = (0, 0)
    login_key: str | None = None
    # What the store's one-step admit said of the user's login (network stores): signing needs no read.
    login_version: int | None = None
    account_id: str | None = None
    login_known: bool = False
    admitted: bool = False  # reached admit(): a model request (the account API, /v1/models… are not usage)
    reached: tuple[str, ...] = ()  # the names of the model this request may reach (typed, resolved, routes)
    money: Money | None = None  # prices and budgets (None: nothing is priced, as before team money)
    budget_rules: dict[str, BudgetRule] | None = None  # this request's budgets, by limit key
    answered: Any = None  # the route whose answer opened (its price settles the budgets)
    headers: dict[str, str] | None = None  # said to the client beside x-subrelay-route (budget, effort)
    ladder: tuple = ()  # proxy.team.ladder.Step: the degradation ladder before the team key
    windows: dict[str, Any] | None = None  # the plan windows of the user's login, when they were read
    switched: str | None = None  # why the quota-aware fallback left the user's own login (None: it did not)
    key_slot: str | None = None  # the upstream key whose deployment-wide stream slot this request holds

    def __init__(self, team: Team, user: User, book: UsageBook, threshold: float, gate: Any = None,
                 money: Money | None = None, ladder: tuple = ()) -> None:
        self.team, self.user, self.book, self.threshold = team, user, book, threshold
        self.gate, self.money, self.ladder = gate, money, ladder

    async def admit(self, routes: list, request: Any, record: RequestRecord | None) -> list:
        """The routes this request may take, limits reserved; raises 403/429 in the client's shape."""
        inbound = getattr(request, "inbound", None)
        model = getattr(request, "model", "") or ""
        routes = self._allowed_routes(routes, model)
        if self.user.model_limits:  # only the per-model limits read every name the model goes by
            self.reached = _reached_names(routes, model)
        if getattr(inbound, "format", None) == "messages.count_tokens":  # counting is free: no limit, no usage
            return routes
        self.admitted = True
        if self.user.max_effort:
            self._cap_effort(request, record)
        if self.team.store.remote:
            return await self._admit_in_one_step(routes, request, record)
        chosen = await self._choose(routes, record)
        chosen = self._step_down(await self._reserve(chosen, request, record, routes), request, record)
        return await self._hold_key(chosen) if self.gate is not None and self.gate.key_caps else chosen

    async def _hold_key(self, routes: list) -> list:
        """One of the deployment's stream slots on the team key this request will use (its cap in
        ``[providers.<name>] max_concurrent``), queued or refused as ``[fairness]`` says; given back
        when the request ends (:meth:`settle`)."""
        caps = self.gate.key_caps if self.gate is not None else None
        if not caps or not routes or routes[0].provider.name not in caps:
            return routes
        name = routes[0].provider.name
        await self.gate.caps.acquire(f"provider:{name}", "stream", caps[name], self.gate.queue_seconds)
        self.key_slot = name
        return routes

    def _step_down(self, routes: list, request: Any, record: RequestRecord | None) -> list:
        """The degradation ladder on the person's own login: a lower effort, then a cheaper model, as the
        plan's windows fill (the team key, the last rung, is the quota-aware fallback's)."""
        if not self.ladder or not routes:
            return routes
        if self.switched is not None:  # the last rung: the quota-aware fallback took the team key
            self._rung(len(self.ladder) + 1, self.switched)
            return routes
        if not _is_own_login(routes[0]):
            return routes
        effort, model, applied, why = rung(self.ladder, self.windows, time.time())
        said = []
        if effort and lower_effort(request, effort):
            said.append(f"effort {effort}")
        if model and routes[0].upstream_model != model and (
                not self.user.models or any(fnmatch.fnmatchcase(model, p) for p in self.user.models)):
            said.append(f"model {model} instead of {routes[0].upstream_model}")
            routes = [replace(routes[0], upstream_model=model), *routes[1:]]
        if said:
            text = "; ".join(said) + f" ({why})"
            self._say("x-subrelay-ladder", text)
            if record is not None:
                record.note(f"ladder: {text}")
        self._rung(applied, why)
        return routes

    def _rung(self, applied: int, why: str) -> None:
        """Log and alert when this person's rung changes (down a step, or back up after a reset)."""
        rungs = self.gate.rungs if self.gate is not None else None
        if rungs is None or rungs.get(self.user.name, 0) == applied:
            return
        before = rungs.get(self.user.name, 0)
        if len(rungs) > 10_000:
            rungs.clear()
        rungs[self.user.name] = applied
        steps = sorted(self.ladder, key=lambda s: s.at)
        what = ("the team key" if applied > len(steps) else steps[applied - 1].describe() if applied
                else "back to the model and effort asked for")
        log.info("user %s: ladder step %d -> %d: %s (%s)", self.user.name, before, applied, what, why or "windows reset")
        alerts = self.money.alerts if self.money is not None else None
        if alerts is not None:
            alerts.send("ladder.step", {"user": self.user.name, "from": before, "to": applied, "step": what,
                                        "why": why or "the plan's windows reset"})

    def _cap_effort(self, request: Any, record: RequestRecord | None) -> None:
        asked = cap_effort(request, self.user.max_effort)
        if asked is not None:
            self._say("x-subrelay-effort", f"{self.user.max_effort}; asked {asked}, capped for {self.user.name}")
            if record is not None:
                record.note(f"effort {asked} -> {self.user.max_effort} (the user's ceiling)")

    def _say(self, header: str, value: str) -> None:
        if self.headers is None:
            self.headers = {}
        self.headers[header] = value

    def _money_rules(self, routes: list, request: Any) -> list[LimitRule]:
        """This request's budget rules for ``routes`` (none without money, or on a plan route)."""
        if self.money is None or not (self.user.budgets or self.money.budgets):
            return []
        if not self.estimate[0] and not self.estimate[1]:
            self.estimate = estimate_tokens(request)
        rules, self.budget_rules = budget_rules(self.money, self.user, routes, self.estimate)
        return rules

    def _free_routes(self, routes: list) -> list:
        """The routes at the head of ``routes`` that cost no money (the person's plan): where a request
        goes once a budget on the paid ones is spent (the team key is used only within its allowance)."""
        free = []
        for route in routes:
            price = self.money.price(route) if self.money is not None else None
            if price is None or not price.plan:
                break
            free.append(route)
        return free

    def _budget_spent(self, refusal: Refusal, routes: list, record: RequestRecord | None) -> list:
        """A budget refused the paid routes: stay on the free ones if there are, else refuse in money."""
        rule = (self.budget_rules or {})[refusal.key]
        free = self._free_routes(routes)
        if not free:
            raise refusal_error(rule, refusal, self.user)
        log.info("user %s: the budget %s is spent; staying on %s", self.user.name, rule.budget.name, free[0].label)
        if record is not None:
            record.note(f"budget {rule.budget.name} spent: staying on {free[0].label}")
        self._say("x-subrelay-budget", f"{rule.budget.name} spent; staying on {free[0].label}")
        self.budget_rules = None
        return free

    def _budget_status(self, reservation: Reservation | None) -> None:
        """Say the tightest budget's use to the client; warn once when a soft threshold is crossed."""
        rules = self.budget_rules
        if not rules or reservation is None or not reservation.totals:
            return
        tightest: tuple[float, Any, int] | None = None  # (share, rule, total): its text made once, at the end
        soft = self.money.soft_percent if self.money else ()
        span = _MARK_SPAN.get(soft)
        if span is None:  # the lowest and highest mark (percent) a reservation can cross
            span = _MARK_SPAN[soft] = (min((*soft, 100)), max((*soft, 100)))
        for (key, amount, _), total in zip(reservation.parts, reservation.totals):
            rule = rules.get(key)
            if rule is None:
                continue
            limit = rule.budget.micros
            share = total / limit if limit else 1.0
            if tightest is None or share > tightest[0]:
                tightest = (share, rule, total)
            # crossed() only when a mark can lie in (before, total]: below the lowest or past the highest, none.
            if limit <= 0 or total < limit * span[0] // 100 or total - amount >= limit * span[1] // 100:
                continue
            mark = crossed(rule, amount, total, soft)
            if mark is not None:
                whose = "team" if rule.owner.startswith("_") else rule.owner
                log.warning("budget %s of %s passed %d%% (%s)", rule.budget.name, whose, mark, rule.budget.describe())
                alerts = self.money.alerts if self.money is not None else None
                if alerts is not None:
                    alerts.send("budget.exhausted" if mark >= 100 else "budget.threshold",
                                {"budget": rule.budget.name, "owner": whose, "percent": mark,
                                 "budget_usd": dollars(limit), "reserved_usd": dollars(total)})
        if tightest is not None:
            share, rule, total = tightest
            left = rule.budget.micros - total
            self._say("x-subrelay-budget", f"{rule.budget.name} {int(share * 100)}% reserved, "
                                           f"${dollars(left if left > 0 else 0)} left")

    def _allowed_routes(self, routes: list, model: str) -> list:
        """The routes whose model the user may reach. The allow-list holds for the model actually
        reached, whatever name reached it (``codex/…``, an alias, a ``[1m]`` suffix): a pattern matches
        the resolved model (``gpt-5.5``) or its route (``codex/gpt-5.5``). A fallback to a model the
        user may not use is dropped; a first route they may not use is a 403."""
        user = self.user
        if not user.models:
            return routes
        allowed = [route for route in routes if _matches_any(_route_names(route), user.models)]
        if not routes or (allowed and allowed[0] is routes[0]):
            return allowed if routes else routes
        reached = f" (it is {routes[0].label})" if routes and routes[0].upstream_model != model else ""
        raise PermissionDenied(f"User {user.name!r} may not use the model {model[:100]!r}{reached}; allowed: "
                               f"{', '.join(user.models)}.", code="model_not_allowed")

    async def _admit_in_one_step(self, routes: list, request: Any, record: RequestRecord | None) -> list:
        """A network store: the key check, the limits and the login's state in one round trip."""
        user = self.user
        rules = self._rules(request)
        in_store = self.team.limiter is self.team.store
        # Money is reserved for every paid route the request may still take (the windows, and so the
        # quota-aware switch, come back from this same step); the settle frees what was not spent.
        money = self._money_rules(self._choose_by(routes, None, None), request) if in_store else []
        def again() -> list[LimitRule]:  # a fresher user record: their limits and budgets as they are now
            if not in_store:
                return []
            return self._rules(request) + self._money_rules(self._choose_by(routes, None, None), request)

        result = await self._one_step(rules + money if in_store else [], again)
        free: list | None = None
        if result.state == "refused" and result.refusal.key in (self.budget_rules or {}):
            free = self._budget_spent(result.refusal, routes, record)
            result = await self._one_step(self._rules(request) if in_store else [])  # once a budget is spent
        if result.state == "refused":
            raise self._over_limit(result.refusal)
        self.reservation = result.reservation
        self.login_version, self.account_id, self.login_known = result.login_version, result.account_id, True
        self.login_key = f"account:{result.account_id}" if result.account_id else None
        self.windows = result.windows
        if not in_store:
            chosen = await self._reserve(free or self._choose_by(routes, result.windows, record), request, record, routes)
            return await self._hold_key(self._step_down(chosen, request, record))
        self._budget_status(self.reservation)
        chosen = self._step_down(free if free is not None else self._choose_by(routes, result.windows, record),
                                 request, record)
        return await self._hold_key(chosen) if self.gate is not None and self.gate.key_caps else chosen

    async def _one_step(self, rules: list[LimitRule], rebuild=None):
        """The store's one-step admit of ``rules`` (``rebuild``: the rules again for a fresher user record)."""
        user = self.user
        try:
            result = await self.team.store.admit(user.key_hash, user.name, user.generation, rules)
            if result.state == "stale":  # the cached record is older than the store's: is the key still good?
                if self.gate is not None:
                    self.gate.forget(user.key_hash)
                fresh = await self.team.store.user_by_key_hash(user.key_hash)
                if fresh is not None and fresh.name == user.name and not fresh.disabled:
                    # A change to the user (a limit raised): their valid key never fails for it.
                    self.user = user = fresh
                    if self.gate is not None:
                        self.gate.remember(user)
                    rules = rebuild() if rebuild is not None else rules
                    result = await self.team.store.admit(user.key_hash, user.name, user.generation, rules)
        except StoreError as exc:
            raise store_unavailable(exc) from None
        if result.state == "stale":
            raise AuthenticationFailed("This subrelay key is no longer valid (disabled, rotated or removed).",
                                       code="invalid_api_key")
        return result

    async def _choose(self, routes: list, record: RequestRecord | None) -> list:
        """The local store: read the plan windows only when a switch or a ladder step could happen."""
        if not routes or not _is_own_login(routes[0]) or (
                (not self.user.fallback or len(routes) < 2) and not self.ladder):
            return self._choose_by(routes, None, record)
        try:
            login = await self.team.store.get_login(self.user.name)
            self.login_key = f"account:{login.account_id}" if login and login.account_id else None
            windows = await self.team.store.get_plan_windows(self.login_key) if self.login_key else None
        except StoreError as exc:
            raise store_unavailable(exc) from None
        self.windows = windows
        return self._choose_by(routes, windows, record)

    def _choose_by(self, routes: list, windows: dict[str, Any] | None, record: RequestRecord | None) -> list:
        if not routes or not _is_own_login(routes[0]):
            return routes
        if not self.user.fallback:
            return routes[:1]  # the team's keys are spent only for people who opted in
        if len(routes) < 2:
            return routes
        reason = full_window(windows, self.threshold, time.time())
        if reason is None:
            return routes
        log.info("user %s: %s (fallback at %g%%); sending to %s instead of %s", self.user.name, reason,
                 self.threshold, routes[1].label, routes[0].label)
        if record is not None:
            record.note(f"quota-fallback {routes[0].label} ({reason}) -> {routes[1].label}")
        self.switched = reason
        return routes[1:]

    async def _reserve(self, routes: list, request: Any, record: RequestRecord | None,
                       offered: list | None = None) -> list:
        """Reserve the limits and the budgets of ``routes`` in one atomic step; the routes to take
        (the free head of ``offered``, the routes before the quota-aware switch, once a budget is spent)."""
        rules = self._rules(request)
        money = self._money_rules(routes, request)
        if not rules and not money:
            return routes
        result = await self._reserve_rules(rules + money)
        if isinstance(result, Refusal) and result.key in (self.budget_rules or {}):
            routes = self._budget_spent(result, offered or routes, record)
            result = await self._reserve_rules(rules) if rules else None
        if isinstance(result, Refusal):
            raise self._over_limit(result)
        self.reservation = result
        self._budget_status(result)
        return routes

    async def _reserve_rules(self, rules: list[LimitRule]) -> Reservation | Refusal:
        try:
            return await self.team.limiter.reserve(rules)
        except StoreError as exc:
            raise store_unavailable(exc) from None

    def _over_limit(self, refusal: Refusal) -> RateLimited:
        kind, _, tail = refusal.key[len(self.user.person) + 1:].partition(":")  # rpm | tpm | day:<date>, [:<glob>]
        pattern = tail.partition(":")[2] if kind == "day" else tail
        label = {"rpm": "requests per minute", "tpm": "tokens per minute", "day": "tokens per day"}[kind]
        if pattern:
            label += f" for {pattern!r}"
        return RateLimited(f"User {self.user.name!r} is over their limit of {label}; try again in "
                           f"{max(int(refusal.retry_after + 0.999), 1)} s.", retry_after=refusal.retry_after,
                           code="user_rate_limit_exceeded")

    def _rules(self, request: Any) -> list[LimitRule]:
        user = self.user
        person = user.person  # counters are the person's, not the name's: a re-added name starts afresh
        self.estimate = estimate = estimate_tokens(request)
        tokens = estimate[0] + estimate[1]
        rules = []
        if user.rpm:
            rules.append(LimitRule(f"{person}:rpm", user.rpm, 60.0, 1))
        if user.tpm:
            rules.append(LimitRule(f"{person}:tpm", user.tpm, 60.0, tokens if tokens < user.tpm else user.tpm))
        if user.daily_tokens:
            day, left = _utc_day()
            rules.append(LimitRule(f"{person}:day:{day}", user.daily_tokens, left,
                                   tokens if tokens < user.daily_tokens else user.daily_tokens))
        if user.model_limits:  # limits for some models only: the first glob matching the model reached
            reached = self.reached or (getattr(request, "model", "") or "",)
            pattern = next((p for p in user.model_limits if _matches_any(reached, (p,))), None)
            if pattern is not None:
                limits = user.model_limits[pattern]
                if limits.get("rpm"):
                    rules.append(LimitRule(f"{person}:rpm:{pattern}", limits["rpm"], 60.0, 1))
                if limits.get("tpm"):
                    rules.append(LimitRule(f"{person}:tpm:{pattern}", limits["tpm"], 60.0, min(tokens, limits["tpm"])))
                if limits.get("daily_tokens"):
                    day, left = _utc_day()
                    rules.append(LimitRule(f"{person}:day:{day}:{pattern}", limits["daily_tokens"], left,
                                           min(tokens, limits["daily_tokens"])))
        return rules

    async def opened(self, route: Any, headers) -> None:
        """Keep the plan's windows of the user's own login from its answer (written only when changed)."""
        self.answered = route
        if not _is_own_login(route):
            return
        windows = plan_windows(headers)
        if windows is None:
            return
        if self.login_key is None:  # the account of the login that just signed this request: no read needed
            account = route.provider.credentials.signed_account(self.user.name)
            self.login_key = f"account:{account}" if account else None
        if self.login_key is None:
            return
        rounded = {name: round(entry["used_percent"]) for name, entry in windows.items()}
        seen = _SEEN_WINDOWS if self.gate is None else self.gate.seen_windows  # across requests: write on change
        if seen.get(self.login_key) != rounded:
            if len(seen) > 10_000:
                seen.clear()
            self._plan_alerts(seen.get(self.login_key), rounded)
            seen[self.login_key] = rounded
            try:
                await self.team.store.put_plan_windows(self.login_key, windows)
            except StoreError as exc:
                log.warning("could not keep %s's plan windows: %s", self.user.name, exc)

    def _plan_alerts(self, before: dict[str, int] | None, now: dict[str, int]) -> None:
        """A webhook when a plan window passes a soft threshold or the fallback's (seen by this process)."""
        alerts = self.money.alerts if self.money is not None else None
        if alerts is None or before is None:
            return
        marks = sorted({*self.money.soft_percent, int(self.threshold)})
        for name, used in now.items():
            passed = [mark for mark in marks if before.get(name, 0) < mark <= used]
            if passed:
                alerts.send("plan.threshold", {"user": self.user.name, "window": name, "used_percent": used,
                                               "threshold": passed[-1]})

    async def settle(self, record: RequestRecord) -> None:
        """Settle the reservation from the reported usage, and account the request (batched)."""
        if self.key_slot is not None:
            self.gate.caps.give_back(f"provider:{self.key_slot}", "stream")
            self.key_slot = None
        if not self.admitted and record.path not in MODEL_PATHS:
            return  # the account API, /v1/models and the like are not usage
        usage = record.usage
        if usage is not None:
            used = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        elif record.status >= 400 or record.status == 0:
            used = 0  # refused before or by the upstream: no tokens spent
        else:  # the client left before the usage arrived: charged for what was delivered, never less
            delivered = delivered_tokens(record)
            used = self.estimate[0] + delivered
            record.usage = Usage(self.estimate[0], delivered, used)
            record.note(f"usage estimated: the client left after {record.relayed_frames} frames")
        cost = spent(self.money, self.answered, record.usage, self.estimate, record.status) if self.money else None
        if self.reservation is not None:
            tokens_only = len(self.user.person) + 1  # settle the token limits; a request stays one request
            actual = {}
            for key, _, _ in self.reservation.parts:
                if key.startswith(("tpm", "day"), tokens_only):
                    actual[key] = used
            if self.budget_rules:  # and the budgets, at what the route that answered charged
                actual.update(settled_amounts(self.budget_rules, self.answered, cost))
            if actual and self.team.limiter is self.team.store:
                self.book.settle_later(self.team.limiter, self.reservation, actual)  # batched, off the request path
            elif actual:
                await self.team.limiter.settle(self.reservation, actual)
        unpriced = cost is None and self.money is not None and self.answered is not None
        self.book.add(self.user.person, record, cost.micros if cost is not None else 0, unpriced)


_MARK_SPAN: dict[tuple[int, ...], tuple[int, int]] = {}  # soft thresholds -> (lowest, highest) with 100
_SEEN_WINDOWS: dict[str, dict[str, int]] = {}  # plan windows last written, per login (when no gate keeps them)
_day_cache: list = [0, ""]  # (the second it was worked out, the UTC day then)


def _utc_day() -> tuple[str, float]:
    """Today's UTC date and the seconds left in it (the date worked out at most once a second)."""
    now = time.time()
    if int(now) != _day_cache[0]:
        _day_cache[0], _day_cache[1] = int(now), time.strftime("%Y-%m-%d", time.gmtime(now))
    return _day_cache[1], 86400.0 - now % 86400


def _route_names(route: Any) -> tuple[str, str]:
    """The names of the model a route reaches: ``gpt-5.5`` and ``codex/gpt-5.5``."""
    return route.upstream_model, route.label


def _reached_names(routes: list, typed: str) -> tuple[str, ...]:
    """Every name the model of this request goes by: what the client typed and what each of its routes
    reaches (an alias, a provider prefix or a fallback cannot carry a request past a per-model limit)."""
    names = [typed]
    for route in routes:
        names.extend(_route_names(route))
    return tuple(names)


def _matches_any(names, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def _is_own_login(route: Any) -> bool:
    """Whether ``route`` is signed with the caller's own ChatGPT login (the per-person provider)."""
    return type(route.provider.credentials).__name__ == "CallerLogins"
