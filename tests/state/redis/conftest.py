"""A redis-server of this directory's own (its tests stop and restart it)."""

from __future__ import annotations

import pytest

from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer


@pytest.fixture
def own_redis():
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = RedisServer(password="test-password-0123").start()
    yield server
    server.close()
