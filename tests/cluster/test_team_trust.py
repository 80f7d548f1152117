"""Team mode's core promise on replicas (issue 25 item 1): the login that signs a person's request is
always that person's *current* login, whichever replica answers and whatever happened on another one
(a logout and a new login, a removal and a re-added name). Each replica has served the person before
the change, so anything it could cache is warm."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from proxy.account.api import PREFIX
from tests.cluster.conftest import Cluster

HI = [{"role": "user", "content": "hi"}]


def _add_user(cluster: Cluster, name: str) -> str:
    result = cluster.cli("users", "add", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["key"]


async def _device_login(cluster: Cluster, base: str, key: str, email: str) -> None:
    """What a person does on the account page of ``base``: start, approve as ``email``, poll."""
    auth = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=auth) as http:
        start = await http.post(f"{PREFIX}/device/start", json={})
        assert start.status_code == 200, start.text
        cluster.mock.state.auth.email = email
        await http.post(cluster.extra["mock_url"] + "/codex/device/decision",
                        data={"user_code": start.json()["user_code"], "decision": "approve"})
        deadline = time.monotonic() + 20
        while not (poll := await http.post(f"{PREFIX}/device/poll", json={"device_code": start.json()["device_code"]})
                   ).json().get("connected"):
            assert poll.status_code == 200 and time.monotonic() < deadline, poll.text
            await asyncio.sleep(0.3)
        assert poll.json()["account_email"] == email


async def _signed_by(cluster: Cluster, base: str, key: str) -> str:
    """The ChatGPT account that signed one chat request sent to ``base`` with ``key``."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                                 headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return cluster.mock.state.requests[-1]["headers"]["chatgpt-account-id"]


async def test_a_new_login_after_a_logout_on_one_replica_signs_at_once_on_every_other(cluster: Cluster):
    key = _add_user(cluster, "alice")
    first, second = cluster.replicas[0].url, cluster.replicas[1].url
    await _device_login(cluster, first, key, "alice-one@example.com")
    for replica in cluster.replicas:  # every replica has opened (and may cache) alice's first login
        assert await _signed_by(cluster, replica.url, key) == "acc-alice-one-mock"

    async with httpx.AsyncClient(base_url=first, timeout=30) as http:
        logout = await http.post(f"{PREFIX}/logout", json={}, headers={"authorization": f"Bearer {key}"})
    assert logout.status_code == 200 and logout.json()["connected"] is False
    async with httpx.AsyncClient(base_url=second, timeout=30) as http:  # logged out everywhere at once
        refused = await http.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                                  headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "login_required"

    await _device_login(cluster, first, key, "alice-two@example.com")  # another ChatGPT account
    wrong = 0
    for _ in range(2):
        for replica in cluster.replicas:
            wrong += await _signed_by(cluster, replica.url, key) != "acc-alice-two-mock"
    print(f"\nrequests signed by a wrong login after alice's new login: {wrong}")
    assert wrong == 0


async def test_a_removed_name_re_added_for_someone_else_never_signs_with_the_removed_persons_login(cluster: Cluster):
    old_key = _add_user(cluster, "bob")
    await _device_login(cluster, cluster.replicas[0].url, old_key, "bob-old@example.com")
    for replica in cluster.replicas:
        assert await _signed_by(cluster, replica.url, old_key) == "acc-bob-old-mock"

    assert cluster.cli("users", "remove", "bob").returncode == 0
    new_key = _add_user(cluster, "bob")  # the name, for a new person
    async with httpx.AsyncClient(base_url=cluster.replicas[1].url, timeout=30) as http:
        before_login = await http.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                                       headers={"authorization": f"Bearer {new_key}"})
    assert before_login.status_code == 401 and before_login.json()["error"]["code"] == "login_required"

    await _device_login(cluster, cluster.replicas[0].url, new_key, "bob-new@example.com")
    signed = [await _signed_by(cluster, replica.url, new_key) for replica in cluster.replicas]
    assert signed == ["acc-bob-new-mock"] * 3
    async with httpx.AsyncClient(base_url=cluster.replicas[2].url, timeout=30) as http:
        gone = await http.post("/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                               headers={"authorization": f"Bearer {old_key}"})
    assert gone.status_code == 401  # the removed person's key is refused everywhere


async def test_a_change_to_a_user_never_fails_their_valid_key_on_any_replica(cluster: Cluster):
    key = _add_user(cluster, "carol")
    await _device_login(cluster, cluster.replicas[0].url, key, "carol@example.com")
    for replica in cluster.replicas:  # every replica has the user's record cached
        assert await _signed_by(cluster, replica.url, key) == "acc-carol-mock"
    assert cluster.cli("users", "set", "carol", "--rpm", "500").returncode == 0  # a limit raised
    for replica in cluster.replicas:
        assert await _signed_by(cluster, replica.url, key) == "acc-carol-mock"  # before: 401 once on each


def test_a_replica_with_another_secret_key_is_not_ready_and_says_why(cluster: Cluster):
    import os
    import subprocess
    import sys

    from proxy.team.secretbox import new_secret
    from tests.redis_server import free_port

    assert httpx.get(cluster.replicas[0].url + "/readyz", timeout=10).status_code == 200  # the key check is sealed
    port = free_port()
    env = {**cluster.base_env, "SUBRELAY_SECRET_KEY": new_secret(),
           "SUBRELAY_STATE_DIR": os.path.join(cluster.workdir, "state-wrong")}
    log_path = os.path.join(cluster.workdir, "wrong.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert ready.status_code == 503 and ready.json()["code"] == "secret_key_mismatch", ready.text
        assert "SUBRELAY_SECRET_KEY" in open(log_path).read()
    finally:
        process.terminate()
        process.wait(timeout=15)
