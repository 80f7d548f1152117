"""The in-memory limiter (one process) keeps the same promises as the stores' own reservations."""

from __future__ import annotations

import asyncio

from proxy.state.limits import MemoryLimiter
from proxy.state.team import LimitRule, Refusal, Reservation


async def test_a_limit_of_n_admits_exactly_n_of_3n_concurrent_reservations():
    limiter = MemoryLimiter()
    rule = [LimitRule("alice:rpm", limit=7, window=60, amount=1)]
    results = await asyncio.gather(*(limiter.reserve(rule) for _ in range(21)))
    assert sum(isinstance(r, Reservation) for r in results) == 7
    refusal = next(r for r in results if isinstance(r, Refusal))
    assert refusal.key == "alice:rpm" and 59 < refusal.retry_after <= 60


async def test_a_reservation_takes_all_rules_or_none():
    limiter = MemoryLimiter()
    await limiter.reserve([LimitRule("alice:tpm", 100, 60, 90)])
    refused = await limiter.reserve([LimitRule("alice:rpm", 5, 60, 1), LimitRule("alice:tpm", 100, 60, 20)])
    assert isinstance(refused, Refusal) and refused.key == "alice:tpm"
    for _ in range(5):
        assert isinstance(await limiter.reserve([LimitRule("alice:rpm", 5, 60, 1)]), Reservation)


async def test_settling_below_the_estimate_frees_the_difference():
    limiter = MemoryLimiter()
    granted = await limiter.reserve([LimitRule("alice:tpm", 100, 60, 80)])
    assert isinstance(await limiter.reserve([LimitRule("alice:tpm", 100, 60, 30)]), Refusal)
    await limiter.settle(granted, {"alice:tpm": 10})
    assert isinstance(await limiter.reserve([LimitRule("alice:tpm", 100, 60, 30)]), Reservation)


async def test_a_window_frees_what_it_reserved_when_it_ends():
    now = [1000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    assert isinstance(await limiter.reserve([LimitRule("bob:rpm", 1, 60, 1)]), Reservation)
    refused = await limiter.reserve([LimitRule("bob:rpm", 1, 60, 1)])
    assert isinstance(refused, Refusal) and refused.retry_after == 60
    now[0] += 60
    assert isinstance(await limiter.reserve([LimitRule("bob:rpm", 1, 60, 1)]), Reservation)


async def test_the_memory_limiter_says_totals_and_what_a_refused_window_held():
    from proxy.state.limits import MemoryLimiter
    from proxy.state.team import LimitRule, Refusal

    limiter = MemoryLimiter()
    rule = LimitRule("ann:usd:month:2026-12", 1_000_000, 3600, 600_000)
    assert (await limiter.reserve([rule])).totals == (600_000,)
    refused = await limiter.reserve([rule])
    assert isinstance(refused, Refusal) and refused.used == 600_000


async def test_a_busy_month_keeps_a_budget_in_a_bounded_number_of_buckets():
    """100,000 requests over a month under one monthly budget: the window's memory stays one bucket
    (a calendar period ends for all of its reservations at once), and a rolling week's stays within
    BUCKETS + 1 however many requests it holds."""
    from proxy.state.limits import BUCKETS

    now = [5_000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    month_end = now[0] + 30 * 86400
    for _ in range(100_000):
        now[0] += 25.0  # a request every 25 s, all month long
        left = month_end - now[0]
        month = LimitRule("ann~1:usd:month:2026-12", 10**12, left, 3)
        week = LimitRule("ann~1:usd:rolling:604800:rolling:604800", 10**12, 604800.0, 2)
        granted = await limiter.reserve([month, week])
        assert isinstance(granted, Reservation)
        await limiter.settle(granted, {month.key: 1, week.key: 1})
        if now[0] >= month_end - 30:
            break
    assert limiter.buckets("ann~1:usd:month:2026-12") == 1
    assert limiter.buckets("ann~1:usd:rolling:604800:rolling:604800") <= BUCKETS + 1


async def test_buckets_never_free_a_reservation_before_its_end_nor_admit_past_the_limit():
    """Against an exact log (one entry per reservation) on random traffic and settles: the bucketed
    window holds at least what the exact one holds at every moment, so it never admits what the exact
    log would refuse; and what it refuses, the exact log held window / BUCKETS earlier (no longer hold)."""
    import random

    from proxy.state.limits import BUCKETS

    draw = random.Random(33)
    now = [100.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    window, limit = 60.0, 50
    exact: dict[str, list] = {}  # reservation id -> [ends at, amount]
    for _ in range(4000):
        now[0] += draw.choice((0.0, 0.01, 0.1, 0.5, 2.0))
        amount = draw.randint(1, 6)
        held = sum(a for ends, a in exact.values() if ends > now[0])
        earlier = sum(a for ends, a in exact.values() if ends > now[0] - window / BUCKETS - 1e-9)
        granted = await limiter.reserve([LimitRule("cy:tpm", limit, window, amount)])
        if isinstance(granted, Reservation):
            assert held + amount <= limit  # never looser than the exact log
            exact[granted.id] = [now[0] + window, amount]
            if draw.random() < 0.7:
                settled = draw.randint(0, amount)
                await limiter.settle(granted, {"cy:tpm": settled})
                exact[granted.id][1] = settled
        else:
            assert earlier + amount > limit  # refused only for what the exact log held a bucket ago
            assert granted.used >= held


async def test_a_settle_after_its_window_ended_changes_nothing():
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    old = await limiter.reserve([LimitRule("dee:tpm", 10, 60, 8)])
    now[0] += 61
    fresh = await limiter.reserve([LimitRule("dee:tpm", 10, 60, 9)])
    await limiter.settle(old, {"dee:tpm": 0})  # late: must not free what the fresh one holds
    assert isinstance(fresh, Reservation)
    assert isinstance(await limiter.reserve([LimitRule("dee:tpm", 10, 60, 2)]), Refusal)
