"""The team store's conformance suite: every backend must pass the same tests.

Backends come from the ``team_store`` fixture (tests/state/conftest.py): the local SQLite file always,
Redis when a ``redis-server`` can be started. Each test reads as what a team would rely on.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy.state.team import LimitRule, Refusal, Reservation, StoredLogin, UsageRow, User, UserExists


def _user(name: str = "alice", key_hash: str | None = None) -> User:
    digest = key_hash or (name * 64)[:64]
    return User(name=name, key_hash=digest, key_id=digest[:12], models=("gpt-5*",), rpm=5, created_at=1.0)


async def test_a_user_added_is_found_by_name_and_by_key_hash(team_store):
    await team_store.add_user(_user())
    assert (await team_store.get_user("alice")).models == ("gpt-5*",)
    assert (await team_store.user_by_key_hash("alice" * 12 + "alic")).name == "alice"
    assert await team_store.user_by_key_hash("0" * 64) is None
    assert await team_store.has_users()


async def test_names_are_unique(team_store):
    await team_store.add_user(_user())
    with pytest.raises(UserExists):
        await team_store.add_user(_user(key_hash="f" * 64))


async def test_a_changed_key_is_found_and_the_old_one_is_not(team_store):
    user = _user()
    await team_store.add_user(user)
    user.key_hash, user.generation = "b" * 64, 2
    await team_store.save_user(user)
    assert await team_store.user_by_key_hash("alice" * 12 + "alic") is None
    assert (await team_store.user_by_key_hash("b" * 64)).generation == 2


async def test_removing_a_user_removes_their_login(team_store):
    await team_store.add_user(_user())
    assert await team_store.put_login("alice", StoredLogin("sealed", 1), expected_version=None)
    assert await team_store.remove_user("alice")
    assert await team_store.get_login("alice") is None
    assert await team_store.get_user("alice") is None
    assert not await team_store.remove_user("alice")


async def test_a_login_is_saved_only_over_the_version_it_was_read_at(team_store):
    await team_store.add_user(_user())
    assert await team_store.put_login("alice", StoredLogin("one", 1, account_id="acc"), expected_version=None)
    assert await team_store.put_login("alice", StoredLogin("two", 2), expected_version=1)
    assert not await team_store.put_login("alice", StoredLogin("stale", 2), expected_version=1)
    assert (await team_store.get_login("alice")).sealed == "two"


async def test_a_login_for_nobody_is_not_saved(team_store):
    assert not await team_store.put_login("ghost", StoredLogin("x", 1), expected_version=None)


async def test_one_lease_holder_at_a_time_and_only_the_holder_releases(team_store):
    assert await team_store.acquire_lease("refresh:alice", "a", 30)
    assert not await team_store.acquire_lease("refresh:alice", "b", 30)
    await team_store.release_lease("refresh:alice", "b")  # not b's to release
    assert not await team_store.acquire_lease("refresh:alice", "b", 30)
    await team_store.release_lease("refresh:alice", "a")
    assert await team_store.acquire_lease("refresh:alice", "b", 30)


async def test_an_expired_lease_is_free(team_store):
    assert await team_store.acquire_lease("refresh:bob", "dead", 0.05)
    await asyncio.sleep(0.1)
    assert await team_store.acquire_lease("refresh:bob", "alive", 30)


async def test_a_limit_of_n_admits_exactly_n_of_3n_concurrent_reservations(team_store):
    rule = [LimitRule("alice:rpm", limit=7, window=60, amount=1)]
    results = await asyncio.gather(*(team_store.reserve(rule) for _ in range(21)))
    assert sum(isinstance(r, Reservation) for r in results) == 7
    refusal = next(r for r in results if isinstance(r, Refusal))
    assert refusal.key == "alice:rpm" and 0 < refusal.retry_after <= 60


async def test_a_reservation_takes_all_rules_or_none(team_store):
    await team_store.reserve([LimitRule("alice:tpm", 100, 60, 90)])
    refused = await team_store.reserve([LimitRule("alice:rpm", 5, 60, 1), LimitRule("alice:tpm", 100, 60, 20)])
    assert isinstance(refused, Refusal) and refused.key == "alice:tpm"
    for _ in range(5):  # the refused request took nothing from the rpm limit
        assert isinstance(await team_store.reserve([LimitRule("alice:rpm", 5, 60, 1)]), Reservation)


async def test_settling_below_the_estimate_frees_the_difference(team_store):
    granted = await team_store.reserve([LimitRule("alice:tpm", 100, 60, 80)])
    assert isinstance(await team_store.reserve([LimitRule("alice:tpm", 100, 60, 30)]), Refusal)
    await team_store.settle(granted, {"alice:tpm": 10})
    assert isinstance(await team_store.reserve([LimitRule("alice:tpm", 100, 60, 30)]), Reservation)


async def test_a_window_frees_what_it_reserved_when_it_ends(team_store):
    assert isinstance(await team_store.reserve([LimitRule("bob:rpm", 1, 0.1, 1)]), Reservation)
    assert isinstance(await team_store.reserve([LimitRule("bob:rpm", 1, 0.1, 1)]), Refusal)
    await asyncio.sleep(0.15)
    assert isinstance(await team_store.reserve([LimitRule("bob:rpm", 1, 0.1, 1)]), Reservation)


async def test_usage_adds_up_per_user_day_model_and_provider(team_store):
    row = dict(user="alice", day="2026-12-01", model="gpt-5.5", provider="codex")
    await team_store.add_usage([UsageRow(**row, requests=1, input_tokens=10, output_tokens=5)])
    await team_store.add_usage([UsageRow(**row, requests=2, errors=1, input_tokens=3, cached_tokens=2),
                                UsageRow("bob", "2026-12-02", "gpt-5.5", "codex", requests=1)])
    alice = await team_store.usage(user="alice")
    assert [(r.requests, r.errors, r.input_tokens, r.cached_tokens, r.output_tokens) for r in alice] == [(3, 1, 13, 2, 5)]
    assert [r.user for r in await team_store.usage(since="2026-12-02")] == ["bob"]
    assert [r.user for r in await team_store.usage(until="2026-12-01")] == ["alice"]


async def test_plan_windows_are_kept_per_login(team_store):
    await team_store.put_plan_windows("account:a", {"primary_used_percent": 96.0})
    assert (await team_store.get_plan_windows("account:a"))["primary_used_percent"] == 96.0
    assert await team_store.get_plan_windows("account:b") is None


async def test_the_store_answers_readiness(team_store):
    assert await team_store.ping()


async def test_admit_checks_the_key_reserves_and_describes_the_login_in_one_step(team_store):
    user = _user()
    await team_store.add_user(user)
    await team_store.put_login("alice", StoredLogin("sealed", 3, account_id="acc-a"), expected_version=None)
    await team_store.put_plan_windows("account:acc-a", {"primary": {"used_percent": 97.0}})
    rules = [LimitRule("alice:rpm", 2, 60, 1)]
    first = await team_store.admit(user.key_hash, "alice", 1, rules)
    assert first.state == "ok" and isinstance(first.reservation, Reservation)
    assert (first.login_version, first.account_id) == (3, "acc-a")
    assert first.windows["primary"]["used_percent"] == 97.0
    assert (await team_store.admit(user.key_hash, "alice", 1, rules)).state == "ok"
    refused = await team_store.admit(user.key_hash, "alice", 1, rules)
    assert refused.state == "refused" and refused.refusal.key == "alice:rpm"


async def test_admit_refuses_a_key_that_changed_since_it_was_cached(team_store):
    user = _user()
    await team_store.add_user(user)
    assert (await team_store.admit(user.key_hash, "alice", 1, [])).state == "ok"
    assert (await team_store.admit(user.key_hash, "alice", 0, [])).state == "stale"  # an older generation
    assert (await team_store.admit(user.key_hash, "bob", 1, [])).state == "stale"  # someone else's name
    user.disabled, user.generation = True, 2
    await team_store.save_user(user)
    assert (await team_store.admit(user.key_hash, "alice", 2, [])).state == "stale"  # disabled
    user.disabled, user.generation, old_hash = False, 3, user.key_hash
    user.key_hash = "c" * 64
    await team_store.save_user(user)
    assert (await team_store.admit(old_hash, "alice", 3, [])).state == "stale"  # rotated away
    assert (await team_store.admit("c" * 64, "alice", 3, [])).state == "ok"
    assert (await team_store.admit("c" * 64, "alice", 3, [])).login_version is None  # no login yet


async def test_a_pending_device_login_is_found_by_its_handle_until_it_expires(team_store):
    import time

    await team_store.put_pending("h1", "sealed-1", "user:alice", time.time() + 30)
    await team_store.put_pending("h2", "sealed-2", "user:bob", time.time() + 0.1)
    assert await team_store.get_pending("h1") == ("sealed-1", "user:alice")
    assert await team_store.count_pending() == 2
    await asyncio.sleep(0.2)
    assert await team_store.get_pending("h2") is None and await team_store.count_pending() == 1
    assert await team_store.clear_pending("user:bob") == 0
    assert await team_store.clear_pending("user:alice") == 1
    assert await team_store.get_pending("h1") is None
    await team_store.put_pending("h3", "sealed-3", "owner:x", time.time() + 30)
    await team_store.delete_pending("h3")
    assert await team_store.count_pending() == 0


async def test_identity_records_are_kept_per_kind_and_owner_and_expire(team_store):
    import time

    await team_store.put_record("session", "s1", b"one", "alice", time.time() + 60)
    await team_store.put_record("session", "s2", b"\x00\xfftwo", "alice", None)
    await team_store.put_record("session", "s3", b"three", "bob", time.time() + 60)
    await team_store.put_record("member_key", "s1", b"a key", "alice", None)  # same key, another kind
    await team_store.put_record("session", "old", b"gone", "alice", time.time() - 1)
    assert await team_store.get_record("session", "s2") == (b"\x00\xfftwo", "alice")
    assert await team_store.get_record("member_key", "s1") == (b"a key", "alice")
    assert await team_store.get_record("session", "old") is None
    assert await team_store.records_of("session", "alice") == [("s1", b"one"), ("s2", b"\x00\xfftwo")]
    assert await team_store.delete_record("session", "s1")
    assert not await team_store.delete_record("session", "s1")
    assert await team_store.delete_records_of("session", "alice") == 1
    assert await team_store.records_of("session", "alice") == []
    assert await team_store.get_record("session", "s3") == (b"three", "bob")
    assert await team_store.get_record("member_key", "s1") == (b"a key", "alice")


async def test_a_users_money_settings_round_trip(team_store):
    user = _user()
    user.budgets, user.max_effort, user.max_concurrent = {"month": "20.00", "day@team": "2.50"}, "high", 3
    await team_store.add_user(user)
    stored = await team_store.get_user("alice")
    assert (stored.budgets, stored.max_effort, stored.max_concurrent) == ({"month": "20.00", "day@team": "2.50"},
                                                                          "high", 3)


async def test_a_reservation_says_each_windows_total_and_a_refusal_what_it_held(team_store):
    """What a budget needs to say how much is left and to warn at a soft threshold, in the same step."""
    money = LimitRule("alice:usd:month:2026-12", 1_000_000, 3600, 300_000)
    first = await team_store.reserve([LimitRule("alice:rpm", 10, 60, 1), money])
    assert first.totals == (1, 300_000)
    second = await team_store.reserve([money])
    assert second.totals == (600_000,)
    await team_store.settle(second, {money.key: 100_000})
    third = await team_store.admit("x" * 64, "nobody", 1, [money])  # admit: the key is checked first
    assert third.state == "stale"
    user = _user()
    await team_store.add_user(user)
    admitted = await team_store.admit(user.key_hash, "alice", 1, [money])
    assert admitted.state == "ok" and admitted.reservation.totals == (700_000,)
    refused = await team_store.admit(user.key_hash, "alice", 1, [LimitRule(money.key, 1_000_000, 3600, 400_000)])
    assert refused.state == "refused" and refused.refusal.used == 700_000
    direct = await team_store.reserve([LimitRule(money.key, 1_000_000, 3600, 400_000)])
    assert isinstance(direct, Refusal) and direct.used == 700_000


async def test_a_budget_of_a_dollar_admits_ten_of_thirty_concurrent_ten_cent_reservations(team_store):
    rule = LimitRule("_all:usd:day:2026-12-07", 1_000_000, 86400, 100_000)
    results = await asyncio.gather(*(team_store.reserve([rule]) for _ in range(30)))
    assert sum(isinstance(r, Reservation) for r in results) == 10
