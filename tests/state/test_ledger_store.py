"""The ledger store's conformance suite: SQLite and Redis append to one hash chain, page newest first with
filters and a cursor, and cut only the oldest end for retention (the chain still checks afterwards)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from proxy.observe.chain import GENESIS, verify
from proxy.state.ledger import LedgerQuery, Retention
from proxy.state.local.ledger import SqliteLedgerStore

NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "redis"])
async def ledger(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteLedgerStore(str(tmp_path / "ledger.sqlite3"))
    else:
        from proxy.state.redis.ledger import RedisLedgerStore

        server = request.getfixturevalue("redis_server")
        store = RedisLedgerStore.from_url(server.url, {"SUBRELAY_REDIS_PREFIX": uuid.uuid4().hex})
    yield store
    await store.close()


def _request(n: int, person: str = "alice", status: int = 200, model: str = "gpt-5.5") -> dict:
    return {"time": f"t{n}", "person": person, "door": "chat", "model": model, "upstream_model": model + "-up",
            "route": f"codex/{model}", "provider": "codex", "status": status, "input_tokens": n, "cost": None}


async def _all(store, log: str) -> list[dict]:
    entries, cursor = await store.chain(log, batch=7)
    while cursor is not None:
        more, cursor = await store.chain(log, cursor, batch=7)
        entries += more
    return entries


async def test_appends_from_two_writers_make_one_chain_that_verifies(ledger):
    await asyncio.gather(*(ledger.append("requests", [_request(i * 10 + j) for j in range(3)], [NOW + i] * 3)
                           for i in range(5)))
    entries = await _all(ledger, "requests")
    assert [e["seq"] for e in entries] == list(range(1, 16))
    assert entries[0]["prev"] == GENESIS
    verdict = verify("requests", entries)
    assert verdict.ok and verdict.entries == 15, verdict.problem
    seq, head, _, _ = await ledger.head("requests")
    assert (seq, head) == (15, entries[-1]["hash"])


async def test_an_entry_edited_after_the_fact_fails_verification(ledger):
    await ledger.append("requests", [_request(i) for i in range(4)], [NOW] * 4)
    entries = await _all(ledger, "requests")
    entries[2]["input_tokens"] = 999_999
    verdict = verify("requests", entries)
    assert not verdict.ok and "seq 3 was edited" in verdict.problem
    dropped = [e for e in await _all(ledger, "requests") if e["seq"] != 2]
    assert "missing" in verify("requests", dropped).problem


async def test_pages_come_newest_first_with_filters_and_a_cursor(ledger):
    rows = [_request(i, person="alice" if i % 2 else "bob", status=429 if i % 3 == 0 else 200,
                     model="gpt-5.5" if i < 6 else "claude-x") for i in range(10)]
    await ledger.append("requests", rows, [NOW + i for i in range(10)])
    first = await ledger.page("requests", LedgerQuery(person="alice", limit=2))
    assert [e["input_tokens"] for e in first.entries] == [9, 7]
    second = await ledger.page("requests", LedgerQuery(person="alice", limit=2, before=first.next_cursor))
    assert [e["input_tokens"] for e in second.entries] == [5, 3]
    third = await ledger.page("requests", LedgerQuery(person="alice", limit=2, before=second.next_cursor))
    assert [e["input_tokens"] for e in third.entries] == [1] and third.next_cursor is None
    errors = await ledger.page("requests", LedgerQuery(status="4xx"))
    assert [e["input_tokens"] for e in errors.entries] == [9, 6, 3, 0]
    by_upstream = await ledger.page("requests", LedgerQuery(model="claude-x-up"))
    assert [e["input_tokens"] for e in by_upstream.entries] == [9, 8, 7, 6]
    window = await ledger.page("requests", LedgerQuery(since=NOW + 2, until=NOW + 4))
    assert [e["input_tokens"] for e in window.entries] == [3, 2]


async def test_the_audit_log_is_a_chain_of_its_own(ledger):
    await ledger.append("requests", [_request(1)], [NOW])
    await ledger.append("audit", [{"time": "t", "actor": "admin key from 127.0.0.1", "via": "api",
                                   "action": "user.disable", "target": "bob", "details": "disabled: true"}], [NOW])
    audit = await _all(ledger, "audit")
    assert [e["seq"] for e in audit] == [1] and audit[0]["prev"] == GENESIS
    page = await ledger.page("audit", LedgerQuery(action="user.disable", target="bob"))
    assert page.entries[0]["actor"] == "admin key from 127.0.0.1"
    assert verify("audit", audit).ok


async def test_retention_cuts_the_oldest_entries_and_the_rest_still_links(ledger, redis_or_sqlite_exact):
    old, young = [_request(i) for i in range(300)], [_request(1000 + i) for i in range(300)]
    await ledger.append("requests", old, [NOW - 100 * 86400] * 300)
    await ledger.append("requests", young, [NOW] * 300)
    removed = await ledger.prune("requests", Retention(days=90, max_entries=None), NOW)
    entries = await _all(ledger, "requests")
    assert removed > 0 and entries[-1]["seq"] == 600
    assert all(e["input_tokens"] >= 1000 for e in entries[-300:])
    if redis_or_sqlite_exact:  # SQLite cuts exactly; Redis trims whole stream nodes (approximately)
        assert [e["seq"] for e in entries] == list(range(301, 601))
    verdict = verify("requests", entries)
    assert verdict.ok and verdict.first_prev != GENESIS
    _, _, cut_seq, cut_hash = await ledger.head("requests")
    assert (cut_seq, cut_hash) == (entries[0]["seq"] - 1, entries[0]["prev"])
    await ledger.append("requests", [_request(5000)], [NOW])
    assert verify("requests", await _all(ledger, "requests")).ok


@pytest.fixture
def redis_or_sqlite_exact(ledger):
    return type(ledger).__name__ == "SqliteLedgerStore"
