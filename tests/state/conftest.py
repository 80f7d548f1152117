"""Team store backends for the conformance suite (tests/state/test_team_store.py): the SQLite file,
and Redis on a real ``redis-server`` started for the session (skipped, with the reason, when it is not
installed)."""

from __future__ import annotations

import uuid

import pytest

from proxy.state.local.team import SqliteTeamStore
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer

BACKENDS = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server():
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
async def team_store(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteTeamStore(str(tmp_path / "team.sqlite3"))
    else:
        from proxy.state.redis.team import RedisTeamStore

        server = request.getfixturevalue("redis_server")
        # each test under its own key prefix: no test sees another's users or counters
        store = RedisTeamStore.from_url(server.url, {"SUBRELAY_REDIS_PREFIX": uuid.uuid4().hex})
    yield store
    await store.close()
