"""Issue 25, item 9: made-up model names cannot grow the usage table. Usage is kept under the model
the route reached when a provider lists it (``codex/gpt-5.4`` and ``gpt-5.4`` are one row) and
every other name under one ``other`` row, on the SQLite and the Redis store."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import httpx
import pytest

from proxy.observe.metrics import RequestRecord
from proxy.server.app import create_app
from proxy.state.local.team import SqliteTeamStore
from proxy.team.context import open_team
from proxy.team.usage import UNLISTED_MODEL, UsageBook
from proxy.team.users import add_user
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer

NAMES = 1000


async def test_a_thousand_made_up_model_names_sent_by_a_member_add_one_usage_row(proxy_settings, tmp_path):
    env = {"SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    team = open_team(env, create=True)
    try:
        key = (await asyncio.wait_for(add_user(team.store, "mallory"), 30))[1]
    finally:
        await team.store.close()
    app = create_app(replace(proxy_settings, env=env))
    statuses = set()
    async with app.router.lifespan_context(app):  # stopping flushes the usage book
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787",
                                     headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
            for index in range(NAMES):
                answer = await client.post("/v1/chat/completions", json={
                    "model": f"made-up-{index}-{uuid.uuid4().hex[:6]}", "messages": [{"role": "user", "content": "hi"}]})
                statuses.add(answer.status_code)
            for name in ("gpt-5.4", "codex/gpt-5.4"):  # one listed model by two names: one row
                await client.post("/v1/chat/completions", json={"model": name,
                                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert statuses == {404}
    team = open_team(env)
    try:
        rows = await asyncio.wait_for(team.store.usage(), 30)
    finally:
        await team.store.close()
    by_model = {row.model: row for row in rows}
    assert len(rows) <= 3, sorted(by_model)[:10]
    assert by_model[UNLISTED_MODEL].requests == NAMES and by_model[UNLISTED_MODEL].errors == NAMES
    assert by_model["gpt-5.4"].requests == 2


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteTeamStore(str(tmp_path / "team.sqlite3"))
        yield store
        await store.close()
        return
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    from proxy.state.redis.team import RedisTeamStore

    server = RedisServer().start()
    store = RedisTeamStore.from_url(server.url, {"SUBRELAY_REDIS_PREFIX": uuid.uuid4().hex})
    try:
        yield store
    finally:
        await asyncio.wait_for(store.close(), 30)
        server.close()


async def test_both_usage_stores_keep_one_row_for_unlisted_names(store):
    book = UsageBook(store)
    for index in range(NAMES):
        record = RequestRecord("r", "POST", "/v1/chat/completions", status=404, model=f"made-up-{index}")
        book.add("mallory", record)
    listed = RequestRecord("r", "POST", "/v1/chat/completions", status=200)
    listed.routed("codex/gpt-5.4", "codex/gpt-5.4", "codex", True, "gpt-5.4")
    book.add("mallory", listed)
    await asyncio.wait_for(book.flush(), 30)
    rows = await asyncio.wait_for(store.usage(), 30)
    assert sorted((row.model, row.requests) for row in rows) == [("gpt-5.4", 1), (UNLISTED_MODEL, NAMES)]
