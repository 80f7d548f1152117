"""Money in team mode's admission: which budgets a request's routes fall under, what to reserve against
each (the bounded estimate at the route's price), what to settle (the reported usage at the price of the
route that answered), and how a refusal reads.

A budget is one more :class:`~proxy.state.team.LimitRule` (amounts in micro-dollars), so it is reserved
with the token limits in the store's one atomic step (one Redis script, one SQLite transaction) and
settled with them: a budget of $1.00 admits requests up to $1.00 however they race, on any number of
workers or replicas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import PermissionDenied, RateLimited
from proxy.money.budgets import Budget, parse_budgets
from proxy.money.prices import Cost, Price, PriceTable, default_table, dollars, price_usage
from proxy.state.team import LimitRule, Refusal, User

DEPLOYMENT = "_all"  # the owner of deployment-wide budgets' keys: not a valid user name
DEFAULT_SOFT_PERCENT = (80,)
_ADAPTER_KINDS = {"CodexAdapter": "codex", "AnthropicAdapter": "anthropic"}  # a provider built without a kind


@dataclass(slots=True)
class Money:
    """The deployment's price table, its own budgets and the soft thresholds (from subrelay.toml)."""

    prices: PriceTable = field(default_factory=default_table)
    budgets: tuple[Budget, ...] = ()  # deployment-wide (a provider's, or every paid route's)
    soft_percent: tuple[int, ...] = DEFAULT_SOFT_PERCENT
    alerts: Any = None  # proxy.team.alerts.Alerts, when webhooks are configured
    _users: dict[str, tuple[tuple[int, float], tuple[Budget, ...]]] = field(default_factory=dict)
    # (user, generation, made, routes) -> which budgets cover those routes, at which prices (see _plan)
    _plans: dict[tuple, list] = field(default_factory=dict)

    def price(self, route: Any) -> Price | None:
        provider = route.provider
        kind = getattr(provider, "kind", "") or _ADAPTER_KINDS.get(type(provider.adapter).__name__)
        return self.prices.price(provider.name, route.upstream_model, kind)

    def user_budgets(self, user: User) -> tuple[Budget, ...]:
        """The user's budgets, parsed once per generation of their record."""
        if not user.budgets:
            return ()
        cached = self._users.get(user.name)
        version = (user.generation, user.created_at)  # a name added again starts at generation 1 again
        if cached is None or cached[0] != version:
            if len(self._users) > 10_000:
                self._users.clear()
            cached = self._users[user.name] = (version, parse_budgets(user.budgets, f"{user.name}.budgets"))
        return cached[1]

    def plan(self, user: User, routes: list) -> list:
        """Per budget covering ``routes``: [owner, budget, the covered routes' prices, whose key, and the
        last period's key and rule]. Worked out once per user record and route chain (prices and budgets
        change only with the config or the user's generation); raises for a covered route with no price."""
        key = (user.name, user.generation, user.created_at, *[(r.provider.name, r.upstream_model) for r in routes])
        found = self._plans.get(key)
        if found is None:
            found = _plan(self, user, routes)
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = found
        return found


@dataclass(slots=True)
class BudgetRule:
    """One budget's rule for this request: whose it is and how it reads."""

    owner: str  # a user's name, or DEPLOYMENT
    budget: Budget
    key: str


def budget_rules(money: Money, user: User, routes: list, estimate: tuple[int, int],
                 now: float | None = None) -> tuple[list[LimitRule], dict[str, BudgetRule]]:
    """The rules to reserve for ``routes`` (the chain this request may take) under every budget that
    covers one of them, each at the most the request could cost on a covered route. A free route (a
    plan) falls under no budget; a paid route with no known price under a budget is refused."""
    plan = money.plan(user, routes)
    if not plan:
        return [], {}
    now = time.time() if now is None else now
    rules: list[LimitRule] = []
    meta: dict[str, BudgetRule] = {}
    for entry in plan:
        _, budget, prices, whose, period_was, rule = entry
        amount = prices[0].estimate(*estimate) if len(prices) == 1 else max(p.estimate(*estimate) for p in prices)
        period, left = budget.window(now)
        if period != period_was:
            rule = BudgetRule(entry[0], budget, f"{whose}:usd:{budget.name}:{period}")
            entry[4], entry[5] = period, rule
        rules.append(LimitRule(rule.key, budget.micros, left, amount))
        meta[rule.key] = rule
    return rules, meta


def _plan(money: Money, user: User, routes: list) -> list:
    """The budgets over ``routes`` (see :meth:`Money.plan`): a free route (a plan) falls under none."""
    budgets = [(user.name, b) for b in money.user_budgets(user)] + [(DEPLOYMENT, b) for b in money.budgets]
    if not budgets:
        return []
    priced = []
    for route in routes:
        price = money.price(route)
        if price is None or not price.plan:
            priced.append((route, price))
    if not priced:
        return []
    plan = []
    for owner, budget in budgets:
        covered = [(r, p) for r, p in priced if budget.provider is None or r.provider.name == budget.provider]
        if not covered:
            continue
        unknown = next((r for r, p in covered if p is None), None)
        if unknown is not None:
            raise PermissionDenied(
                f"No price is known for {unknown.label}, and the budget {budget.name!r} ({budget.describe()}) "
                f"covers it: add [prices.\"{unknown.label}\"] with input and output (dollars per million "
                "tokens) to subrelay.toml.", code="price_unknown")
        whose = user.person if owner == user.name else owner  # the person's own counters
        plan.append([owner, budget, tuple(p for _, p in covered), whose, None, None])
    return plan


def spent(money: Money, route: Any, usage: Any, estimate: tuple[int, int], status: int) -> Cost | None:
    """What the request cost on ``route``: its reported usage at the route's price; settled at its input
    when cancelled mid-answer (no usage); 0 when refused. None: the route's price is unknown."""
    price = money.price(route) if route is not None else None
    if price is None:
        return None
    if usage is not None:
        return price_usage(price, usage)
    if status >= 400 or status == 0:
        return Cost(0, price)
    return Cost(price.estimate(estimate[0], 0), price)


def settled_amounts(meta: dict[str, BudgetRule], route: Any, cost: Cost | None) -> dict[str, int]:
    """Per budget rule, what this request spent under it (only the route that answered counts)."""
    micros = cost.micros if cost is not None else 0
    provider = route.provider.name if route is not None else None
    return {key: micros if rule.budget.provider is None or rule.budget.provider == provider else 0
            for key, rule in meta.items()}


def refusal_error(rule: BudgetRule, refusal: Refusal, user: User) -> RateLimited:
    """A 429 naming the budget, what is left and when it resets (in every door's error shape)."""
    left = max(rule.budget.micros - refusal.used, 0)
    wait = max(int(refusal.retry_after + 0.999), 1)
    whose = f"User {user.name!r}'s budget" if rule.owner != DEPLOYMENT else "The team's budget"
    resets = "frees up" if rule.budget.period.startswith("rolling:") else "resets"
    resets_at = int(time.time() + refusal.retry_after)
    return RateLimited(
        f"{whose} {rule.budget.name!r} ({rule.budget.describe()}) is spent: ${dollars(left)} left, less than "
        f"this request may cost; it {resets} in {wait} s ({time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(resets_at))}).",
        retry_after=refusal.retry_after, code="budget_exceeded",
        headers={"x-should-retry": "false"},  # the SDKs' retries cannot help before the reset
        details={"budget": rule.budget.name, "budget_owner": "team" if rule.owner == DEPLOYMENT else rule.owner,
                 "budget_usd": dollars(rule.budget.micros), "left_usd": dollars(left), "resets_at": resets_at})


def crossed(rule: BudgetRule, amount: int, total: int, soft_percent: tuple[int, ...]) -> int | None:
    """The highest soft threshold (or 100: exhausted) this reservation just crossed, if any."""
    limit = rule.budget.micros
    if limit <= 0:
        return None
    before = total - amount
    marks = _MARKS.get(soft_percent)
    if marks is None:
        marks = _MARKS[soft_percent] = tuple(sorted((*soft_percent, 100), reverse=True))
    for percent in marks:
        mark = limit * percent // 100
        if before < mark <= total:
            return percent
    return None


_MARKS: dict[tuple[int, ...], tuple[int, ...]] = {}  # soft thresholds -> with 100, highest first (a few)
