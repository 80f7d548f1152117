"""seal = "member" on three replicas behind HAProxy, sharing one Redis: a member's requests work on
every replica, an expired login is refreshed once cluster-wide (inside one of the member's own
requests, re-sealed under the same data key), and Redis's contents plus the secret key open nothing."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

import httpx
import pytest
import redis

from proxy.hub.caller import CALLER, Caller
from proxy.state.redis.team import RedisTeamStore
from proxy.team import member_seal
from proxy.team.context import Team
from proxy.team.keys import hash_key
from proxy.team.logins import seal_login
from proxy.team.secretbox import SecretBox, parse_secret
from tests.cluster.conftest import SECRET_KEY, Cluster, start_cluster
from tests.cluster.test_team_trust import _device_login

REPLICA_HEADER = "x-subrelay-replica"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sealed_cluster():
    config = os.path.join(tempfile.mkdtemp(prefix="subrelay-seal-"), "subrelay.toml")
    with open(config, "w") as handle:
        handle.write('[identity]\nseal = "member"\n')
    # One member's 45 concurrent requests: above the per-person cap on requests in flight (a fairness
    # bound this test is not about), so the cap is raised here.
    with start_cluster({"SUBRELAY_CONFIG": config, "SUBRELAY_USER_MAX_CONCURRENT": "64"}) as cluster:
        yield cluster


async def _expire_login(cluster: Cluster, name: str, key: str) -> None:
    """What a refresh-due login looks like, written as the member's own request would (with their key)."""
    store = RedisTeamStore.from_url(cluster.redis.url, {})
    team = Team(store=store, box=SecretBox([parse_secret(SECRET_KEY)]), seal="member")
    CALLER.set(Caller("user", name=name, unlock=member_seal.derive(key.encode()), credential_id=hash_key(key)))
    try:
        assert await member_seal.unlock(team, name) is not None  # the member's key unwraps their data key
        existing = await store.get_login(name)
        expired = cluster.mock.state.auth_file(expires_in=-600, email=f"{name}@example.test",
                                               account=f"acc-{name}-mock")
        login = seal_login(team, name, expired, existing.version + 1)
        assert await store.put_login(name, login, expected_version=existing.version)
    finally:
        member_seal.DATA_KEY.set(None)
        await store.close()


async def test_sealed_members_logins_work_on_every_replica_with_one_refresh_and_redis_opens_nothing(
        sealed_cluster: Cluster):
    cluster = sealed_cluster
    added = cluster.cli("users", "add", "maya", "--json")
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)["key"]
    await _device_login(cluster, cluster.replicas[0].url, key, "maya@example.test")
    await _expire_login(cluster, "maya", key)
    state = cluster.mock.state
    before, state.refresh_delay = state.refresh_calls, 0.3
    try:
        async with httpx.AsyncClient(base_url=cluster.url, timeout=60,
                                     limits=httpx.Limits(max_connections=60)) as http:
            answers = await asyncio.gather(*(http.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                                                       headers={"authorization": f"Bearer {key}"})
                                             for _ in range(45)))
    finally:
        state.refresh_delay = 0.0
    assert [a.status_code for a in answers] == [200] * 45, answers[0].text
    assert {a.headers[REPLICA_HEADER] for a in answers} == {"r1", "r2", "r3"}
    assert state.refresh_calls - before == 1  # one refresh cluster-wide, inside one of maya's requests

    # Everything Redis holds, plus the secret key: the outer layer opens, the member's layer does not.
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        values = {k: client.dump(k) for k in client.keys("*")}
        login = json.loads(client.get(next(k for k in values if k.endswith(b":l:maya"))))
    finally:
        client.close()
    inner = SecretBox([parse_secret(SECRET_KEY)]).open(login["sealed"], context="maya")
    assert inner.startswith(member_seal.MARK) and b"token" not in inner
    assert not any(b"refresh_token" in (value or b"") for value in values.values())
