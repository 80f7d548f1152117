"""Three replicas behind HAProxy behave as one subrelay (issue 20): state lives in Redis, so a
conversation continues on any replica, one refresh happens cluster-wide, limits hold across replicas,
a revoked key is refused everywhere at once, and Redis or a replica going away is bounded and healed.

Order matters: the first tests run with no team users (the owner's login); the team tests add users,
after which every request needs a user's key.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from proxy.state.redis.team import RedisTeamStore
from proxy.team.context import Team
from proxy.team.logins import seal_login
from proxy.team.secretbox import SecretBox, parse_secret
from tests.cluster.conftest import REDIS_TIMEOUT, SECRET_KEY, Cluster

REPLICA_HEADER = "x-subrelay-replica"


def _client(base_url: str, key: str = "sk-owner-not-needed", **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, **kw)


async def test_a_conversation_continues_with_previous_response_id_whichever_replica_answers(cluster: Cluster):
    client = _client(cluster.url)
    first = await client.responses.with_raw_response.create(model="gpt-5.5", input="My name is Ada. Remember it.")
    previous, served = first.parse().id, {first.headers[REPLICA_HEADER]}
    for turn in range(5):  # round robin: the next turns land on the other replicas
        answer = await client.responses.with_raw_response.create(model="gpt-5.5", previous_response_id=previous,
                                                                input=f"Turn {turn}: what is my name?")
        previous = answer.parse().id
        served.add(answer.headers[REPLICA_HEADER])
        sent = cluster.mock.state.requests[-1]
        assert "My name is Ada" in json.dumps(sent["body"]["input"])  # the whole history reached the upstream
    assert served == {"r1", "r2", "r3"}
    await client.close()


async def test_the_replicas_read_the_model_catalogue_once_between_them(cluster: Cluster):
    deadline = time.monotonic() + 30
    while True:  # every replica lists the account's own model once one of them read the catalogue
        listed = [{m["id"] for m in httpx.get(r.url + "/v1/models", timeout=5).json()["data"]} for r in cluster.replicas]
        if all("nova-1" in models for models in listed):
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.5)
    assert cluster.mock.state.catalog_calls == 1  # one read for three replicas, shared through Redis


async def test_the_owners_login_lives_in_redis_once_imported_from_auth_json(cluster: Cluster):
    import os

    from proxy.state.team import OWNER_LOGIN

    store = RedisTeamStore.from_url(cluster.redis.url, {})
    try:
        stored = await store.get_login(OWNER_LOGIN)
    finally:
        await store.close()
    assert stored is not None and stored.account_id  # sealed in Redis, version-guarded like a user's login
    assert any("imported the owner's ChatGPT login" in replica.log() for replica in cluster.replicas)
    auth_path = cluster.base_env["CODEX_AUTH_PATH"]
    kept = auth_path + ".kept"
    os.rename(auth_path, kept)  # the replicas' local file is gone: they sign from Redis
    try:
        client = _client(cluster.url)
        for _ in range(3):
            answer = await client.chat.completions.with_raw_response.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
            assert answer.parse().choices[0].message.content
        await client.close()
    finally:
        os.rename(kept, auth_path)


async def test_a_device_login_started_on_one_replica_is_finished_on_another(cluster: Cluster):
    from proxy.account.api import PREFIX

    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as http:
        start = await http.post(f"{PREFIX}/device/start", json={})
        assert start.status_code == 200, start.text
        handle, code = start.json()["device_code"], start.json()["user_code"]
        started_on = start.headers.get(REPLICA_HEADER)
        cluster.mock.state.auth.email = "owner-two@example.com"
        await http.post(cluster.extra['mock_url'] + "/codex/device/decision", data={"user_code": code, "decision": "approve"})
        polled_on, deadline = set(), time.monotonic() + 20
        while True:
            poll = await http.post(f"{PREFIX}/device/poll", json={"device_code": handle})
            assert poll.status_code == 200, poll.text
            polled_on.add(poll.headers.get(REPLICA_HEADER))
            if poll.json().get("connected"):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
    assert polled_on - {started_on}  # at least one poll was answered by another replica
    assert poll.json()["account_email"] == "owner-two@example.com"
    answer = await _client(cluster.url).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert cluster.mock.state.requests[-1]["headers"]["chatgpt-account-id"] == "acc-owner-two-mock"
    assert answer.parse().choices[0].message.content


async def test_redis_stopped_answers_503_within_the_timeout_and_recovers_without_a_restart(cluster: Cluster):
    client = _client(cluster.url)
    assert (await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]))
    cluster.redis.stop()
    try:
        failures = []
        for _ in range(3):  # one per replica
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
            failures.append((refused.value.status_code, refused.value.body.get("code"), time.monotonic() - started))
        not_ready = [httpx.get(r.url + "/readyz", timeout=5).status_code for r in cluster.replicas]
        alive = [httpx.get(r.url + "/healthz", timeout=5).status_code for r in cluster.replicas]
    finally:
        cluster.redis.start()
    print(f"\nRedis down: {[(s, c, round(t, 3)) for s, c, t in failures]}")
    assert all(status == 503 and code == "state_store_unavailable" for status, code, _ in failures)
    assert all(elapsed < REDIS_TIMEOUT + 1.0 for _, _, elapsed in failures)  # bounded by the configured timeout
    assert not_ready == [503, 503, 503] and alive == [200, 200, 200]
    assert all(r.alive() for r in cluster.replicas) and "Traceback" not in "".join(r.log() for r in cluster.replicas)
    for _ in range(3):  # every replica serves again, no restart
        answer = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "back?"}])
        assert answer.choices[0].message.content
    assert [httpx.get(r.url + "/readyz", timeout=5).status_code for r in cluster.replicas] == [200, 200, 200]
    await client.close()


async def test_a_replica_killed_during_streams_loses_only_its_own_streams(cluster: Cluster):
    state = cluster.mock.state
    state.delta_count, state.inter_delta_delay = 30, 0.05  # each stream lasts ~1.5 s
    victim = cluster.replicas[0]
    http = httpx.AsyncClient(timeout=30)

    async def stream(n: int) -> tuple[str, bool]:
        body = {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": f"stream {n}"}]}
        try:
            async with http.stream("POST", cluster.url + "/v1/chat/completions", json=body) as response:
                replica = response.headers.get(REPLICA_HEADER, "?")
                text = b""
                async for chunk in response.aiter_bytes():
                    text += chunk
                return replica, text.rstrip().endswith(b"data: [DONE]")
        except httpx.HTTPError:
            return replica if "replica" in locals() else "?", False

    try:
        tasks = [asyncio.create_task(stream(n)) for n in range(9)]
        await asyncio.sleep(0.6)  # every stream is under way
        victim.kill()
        results = await asyncio.gather(*tasks)
    finally:
        state.delta_count, state.inter_delta_delay = None, 0.0
        await http.aclose()
        if not victim.alive():
            victim.start()
            victim.wait_ready()
            await asyncio.sleep(1.0)  # HAProxy sees it up again
    others = [done for replica, done in results if replica != victim.name]
    print(f"\nreplica killed mid-stream: {sum(others)}/{len(others)} streams on the others finished; "
          f"{sum(not d for r, d in results if r == victim.name)} on {victim.name} cut")
    assert others and all(others)
    assert not any(done for replica, done in results if replica == victim.name)


# -- team mode on the request path ------------------------------------------------------------------


def _add_user(cluster: Cluster, name: str, *options: str) -> str:
    result = cluster.cli("users", "add", name, *options, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["key"]


async def _put_login(cluster: Cluster, name: str, **token_options) -> None:
    store = RedisTeamStore.from_url(cluster.redis.url, {})
    team = Team(store=store, box=SecretBox([parse_secret(SECRET_KEY)]))
    auth = cluster.mock.state.auth_file(**token_options)
    existing = await store.get_login(name)
    login = seal_login(team, name, auth, (existing.version + 1) if existing else 1)
    assert await store.put_login(name, login, expected_version=existing.version if existing else None)
    await store.close()


async def test_a_storm_on_an_expired_login_refreshes_once_cluster_wide(cluster: Cluster):
    key = _add_user(cluster, "storm")
    await _put_login(cluster, "storm", expires_in=-600)  # the access token expired ten minutes ago
    state = cluster.mock.state
    before, state.refresh_delay = state.refresh_calls, 0.3
    client = _client(cluster.url, key, http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=100),
                                                                      timeout=60))
    try:
        answers = await asyncio.gather(*(client.chat.completions.with_raw_response.create(
            model="gpt-5.5", messages=[{"role": "user", "content": f"storm {n}"}]) for n in range(300)),
            return_exceptions=True)
    finally:
        state.refresh_delay = 0.0
    failed = [a for a in answers if isinstance(a, Exception)]
    replicas = {a.headers[REPLICA_HEADER] for a in answers if not isinstance(a, Exception)}
    print(f"\nstorm: {300 - len(failed)}/300 answered across {sorted(replicas)}, "
          f"{state.refresh_calls - before} refresh(es) at the mock")
    assert not failed, failed[:3]
    assert replicas == {"r1", "r2", "r3"}
    assert state.refresh_calls - before == 1
    await client.close()


async def test_a_limit_of_n_admits_exactly_n_of_3n_concurrent_requests_across_replicas(cluster: Cluster):
    n = 5
    key = _add_user(cluster, "limited", "--rpm", str(n))
    await _put_login(cluster, "limited")
    client = _client(cluster.url, key)
    answers = await asyncio.gather(*(client.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": f"limit {i}"}]) for i in range(3 * n)),
        return_exceptions=True)
    admitted = [a for a in answers if not isinstance(a, Exception)]
    refused = [a for a in answers if isinstance(a, Exception)]
    print(f"\nlimit {n}/min: {len(admitted)} of {3 * n} admitted")
    assert len(admitted) == n
    assert all(isinstance(r, openai.RateLimitError) for r in refused)
    await client.close()


async def test_a_revoked_key_is_refused_on_every_replica_on_the_next_request(cluster: Cluster):
    key = _add_user(cluster, "revoked")
    await _put_login(cluster, "revoked")
    for replica in cluster.replicas:  # each replica has served this key (anything it could cache is warm)
        answer = await _client(replica.url, key).chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
    assert cluster.cli("users", "disable", "revoked").returncode == 0
    for replica in cluster.replicas:
        with pytest.raises(openai.AuthenticationError):
            await _client(replica.url, key).chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "still there?"}])


async def test_a_refresh_persisted_just_before_redis_is_killed_is_there_after_its_restart(cluster: Cluster):
    key = _add_user(cluster, "durable")
    await _put_login(cluster, "durable", expires_in=-600)
    state = cluster.mock.state
    before = state.refresh_calls
    client = _client(cluster.url, key)
    assert (await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "a"}]))
    assert state.refresh_calls - before == 1
    cluster.redis.stop(kill=True)  # SIGKILL right after the refresh was acknowledged
    cluster.redis.start()
    for _ in range(3):  # every replica uses the refreshed login: no second refresh (its token was single-use)
        assert (await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "b"}]))
    assert state.refresh_calls - before == 1
    store = RedisTeamStore.from_url(cluster.redis.url, {})
    login = await store.get_login("durable")
    await store.close()
    assert login.version == 2 and login.needs_login is None
    await client.close()
