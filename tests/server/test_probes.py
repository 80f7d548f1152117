"""Claude Code's reachability probe (``HEAD {ANTHROPIC_BASE_URL}/api/hello``, and ``HEAD /``) is
answered 200 without a key, even when client keys are required; nothing else is opened."""

from __future__ import annotations

import httpx
import pytest

from proxy.config.settings import Settings
from proxy.server.app import create_app


@pytest.fixture
async def client(tmp_path):
    app = create_app(Settings(codex_auth_path=str(tmp_path / "none.json"), api_keys=("sk-subrelay-client-key-0123456789",)))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as c:
            yield c


@pytest.mark.parametrize("path", ["/", "/api/hello"])
async def test_probes_answer_200_without_a_key(client, path):
    response = await client.head(path)
    assert response.status_code == 200 and response.content == b""


async def test_other_paths_still_need_the_key(client):
    assert (await client.head("/v1/models")).status_code == 401
    assert (await client.get("/api/hello")).status_code == 401
    assert (await client.post("/v1/messages", json={})).status_code == 401
