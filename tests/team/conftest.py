"""A proxy with team mode's admin surface: an admin key and its own state directory."""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import replace

import httpx
import pytest

from proxy.config.file import parse_config
from proxy.server.app import create_app
from proxy.state.local.team import SqliteTeamStore
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState

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


@pytest.fixture
def openai_mock():
    app = MockOpenAIServer()
    app.state = OpenAIMockState()
    with ServerThread(app) as thread:
        yield app, thread


@pytest.fixture
def extra_env():
    """More environment for ``ledger_team`` (a test module overrides this fixture)."""
    return {}


@pytest.fixture
def ledger_team(proxy_settings, state_dir, openai_mock, monkeypatch, extra_env):
    """A team proxy with two OpenAI-compatible providers (the second the first's fallback), alice and bob."""
    app, thread = openai_mock
    config = parse_config(tomllib.loads(f'''
[providers.primary]
kind = "custom"
base_url = "{thread.url}/v1"
api_key_env = "MOCK_KEY"
models = ["gpt-x"]
[providers.backup]
kind = "custom"
base_url = "{thread.url}/v1"
api_key_env = "MOCK_KEY"
models = ["gpt-x"]
[fallbacks]
"primary/gpt-x" = ["backup/gpt-x"]
'''))
    env = {"SUBRELAY_STATE_DIR": str(state_dir), "MOCK_KEY": app.state.api_key, **extra_env}
    for name, value in env.items():  # the `subrelay` commands below read the same state directory
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(state_dir.parent))  # no real ~/.subrelay or config is read
    settings = replace(proxy_settings, admin_key=ADMIN_KEY, file=config, env=env)
    with ServerThread(create_app(settings)) as proxy:
        admin = httpx.Client(base_url=proxy.url, headers={"x-admin-key": ADMIN_KEY}, timeout=15)
        keys = {name: admin.post("/api/admin/users", json={"name": name}).json()["key"] for name in ("alice", "bob")}
        yield proxy.url, admin, keys, app


def ask(base: str, key: str, messages: list, user_agent: str = "OpenAI/Python 2.8.0") -> httpx.Response:
    """One chat request to ``primary/gpt-x`` (see ``ledger_team``) with a user's key."""
    return httpx.post(f"{base}/v1/chat/completions", timeout=15, headers={
        "authorization": f"Bearer {key}", "user-agent": user_agent}, json={"model": "primary/gpt-x", "messages": messages})
