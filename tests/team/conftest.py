"""A proxy with team mode's admin surface: an admin key and its own state directory."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from proxy.server.app import create_app
from proxy.state.local.team import SqliteTeamStore
from tests.mock_upstream import ServerThread

ADMIN_KEY = "admin-" + "Q7x" * 10


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def admin_settings(proxy_settings, state_dir):
    return replace(proxy_settings, admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(state_dir)})


@pytest.fixture
def admin_proxy(admin_settings):
    with ServerThread(create_app(admin_settings)) as thread:
        yield thread


def in_store(state_dir, action):
    """Run ``action(store)`` against the team store file, as another process would (its own connection)."""

    async def run():
        store = SqliteTeamStore(str(state_dir / "team.sqlite3"))
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())
