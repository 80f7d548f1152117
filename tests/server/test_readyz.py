"""``/readyz`` tells a load balancer whether this replica can serve: its state store answers.
``/healthz`` stays liveness (the process is up), whatever the store does."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest

from proxy.config.settings import Settings
from proxy.server.app import create_app
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer


@asynccontextmanager
async def client_for(settings: Settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            yield client


def _settings(tmp_path, env: dict[str, str], **kw) -> Settings:
    return Settings(codex_auth_path=str(tmp_path / "auth.json"), codex_base_url="http://127.0.0.1:9/never",
                    env={"SUBRELAY_STATE_DIR": str(tmp_path / "state"), **env}, **kw)


async def test_ready_without_any_store_and_without_a_key(tmp_path):
    async with client_for(_settings(tmp_path, {}, api_keys=("key-one-abcdefgh",))) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_not_ready_while_redis_is_down_and_ready_again_when_it_returns(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    redis = RedisServer(password="readyz-password-1").start()
    try:
        env = {"SUBRELAY_REDIS_URL": redis.url, "SUBRELAY_REDIS_TIMEOUT": "0.5"}
        async with client_for(_settings(tmp_path, env)) as client:
            assert (await client.get("/readyz")).status_code == 200
            redis.stop()
            down = await client.get("/readyz")
            alive = await client.get("/healthz")
            redis.start()
            again = await client.get("/readyz")
    finally:
        redis.close()
    assert down.status_code == 503 and down.json()["code"] == "state_store_unavailable"
    assert redis.password not in down.text
    assert alive.status_code == 200
    assert again.status_code == 200
