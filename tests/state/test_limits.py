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
