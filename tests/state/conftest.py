"""Team store backends for the conformance suite (tests/state/test_team_store.py)."""

from __future__ import annotations

import pytest

from proxy.state.local.team import SqliteTeamStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def team_store(request, tmp_path):
    store = SqliteTeamStore(str(tmp_path / "team.sqlite3"))
    yield store
    await store.close()
