"""The Sentinel deployments checked offline (issue 32): the Kubernetes variant rendered and validated
against the schemas, its Redis pods' init script run for real (the config it writes is what redis-server
starts with, as a primary for pod 0 and as a replica for the others), and the compose profile's promises
read from the file. No cluster or container engine runs here; the failover itself is exercised by
tests/cluster/test_partitions.py against the same Redis settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_deploy import render_kustomization
from tests.redis_server import REDIS_SERVER, free_port

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
BIN = Path(sys.executable).parent


def _documents() -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for document in render_kustomization(DEPLOY / "kubernetes" / "sentinel"):
        by_kind.setdefault(document["kind"], []).append(document)
    return by_kind


def test_the_sentinel_manifests_render_and_validate(tmp_path):
    validator = shutil.which("kubernetes-validate") or str(BIN / "kubernetes-validate")
    if not os.path.exists(validator):
        pytest.skip("kubernetes-validate is not installed (the test extras install it)")
    by_kind = _documents()
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all([d for docs in by_kind.values() for d in docs]))
    result = subprocess.run([validator, "--strict", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    redis = by_kind["StatefulSet"][0]
    assert redis["spec"]["replicas"] == 3
    containers = {c["name"]: c for c in redis["spec"]["template"]["spec"]["containers"]}
    assert containers["sentinel"]["args"] == ["/conf/sentinel.conf", "--sentinel"]
    headless = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "subrelay-redis")
    assert headless["spec"]["publishNotReadyAddresses"] is True  # sentinels find their peers before ready
    assert {p["port"] for p in headless["spec"]["ports"]} == {6379, 26379}
    deployment = by_kind["Deployment"][0]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SUBRELAY_REDIS_URL" not in env  # the sentinels name the primary
    sentinels = env["SUBRELAY_REDIS_SENTINELS"]["value"].split(",")
    assert sentinels == [f"subrelay-redis-{n}.subrelay-redis:26379" for n in range(3)]
    assert env["SUBRELAY_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "subrelay-redis"
    assert env["SUBRELAY_REDIS_WAIT_REPLICAS"]["value"] == "1"
    assert {p["metadata"]["name"] for p in by_kind["PodDisruptionBudget"]} == {"subrelay", "subrelay-redis"}
    policy = next(p for p in by_kind["NetworkPolicy"] if p["metadata"]["name"] == "subrelay-redis")
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {6379, 26379}


@pytest.mark.parametrize("pod", ["subrelay-redis-0", "subrelay-redis-1"])
def test_the_redis_pods_init_script_writes_a_config_redis_starts_with(tmp_path, pod):
    if REDIS_SERVER is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    init = _documents()["StatefulSet"][0]["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][2].replace("/conf/", f"{tmp_path}/").replace("dir /data", f"dir {tmp_path}")
    # The pod names do not resolve here, so no sentinel answers: the first-start path (pod 0 is the primary).
    done = subprocess.run(["sh", "-c", script], env={**os.environ, "POD_NAME": pod, "REDIS_PASSWORD": "pw-0123"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sentinel = (tmp_path / "sentinel.conf").read_text()
    assert "sentinel monitor subrelay subrelay-redis-0.subrelay-redis 6379 2" in sentinel
    assert f"sentinel announce-ip {pod}.subrelay-redis" in sentinel
    port = free_port()
    server = subprocess.Popen([REDIS_SERVER, str(tmp_path / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
                               "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        info = ""
        deadline = time.monotonic() + 15
        while "role:" not in info:
            assert server.poll() is None, "redis-server refused the config the init script wrote"
            assert time.monotonic() < deadline
            info = subprocess.run(["redis-cli", "-p", str(port), "-a", "pw-0123", "--no-auth-warning", "INFO",
                                   "replication"], capture_output=True, text=True, timeout=5).stdout
            time.sleep(0.05)
        config = subprocess.run(["redis-cli", "-p", str(port), "-a", "pw-0123", "--no-auth-warning", "CONFIG", "GET",
                                 "appendfsync"], capture_output=True, text=True, timeout=5).stdout.split()
        assert config == ["appendfsync", "always"]
        if pod.endswith("-0"):
            assert "role:master" in info
        else:
            assert "role:slave" in info and "master_host:subrelay-redis-0.subrelay-redis" in info
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_compose_sentinel_profile_runs_three_nodes_three_sentinels_and_replicas_that_follow():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    profile = {name for name, service in services.items() if "sentinel" in service.get("profiles", [])}
    assert profile == {"redis-a", "redis-b", "redis-c", "sentinel-a", "sentinel-b", "sentinel-c", "ha-subrelay-1",
                       "ha-subrelay-2", "ha-subrelay-3", "ha-haproxy"}
    for name in ("redis-a", "redis-b", "redis-c"):
        command = services[name]["command"][2]
        assert "--appendfsync always" in command and "--min-replicas-to-write 1" in command
        assert ("--replicaof redis-a 6379" in command) == (name != "redis-a")
        assert "ports" not in services[name]
    for name in ("sentinel-a", "sentinel-b", "sentinel-c"):
        assert "sentinel monitor subrelay redis-a 6379 2" in services[name]["command"][2]
    for n in (1, 2, 3):
        replica = services[f"ha-subrelay-{n}"]
        assert replica["environment"]["SUBRELAY_REDIS_SENTINELS"] == \
            "sentinel-a:26379,sentinel-b:26379,sentinel-c:26379"
        assert replica["networks"]["default"]["aliases"] == [f"subrelay-{n}"]  # what haproxy.cfg names
        assert replica["environment"]["SUBRELAY_REDIS_PASSWORD"] == "${REDIS_PASSWORD:-}"
        assert "SUBRELAY_SECRET_KEY" in replica["environment"] and "SUBRELAY_REDIS_URL" not in replica["environment"]
    assert services["ha-haproxy"]["ports"] == ["${SUBRELAY_SENTINEL_PUBLISH:-127.0.0.1:8791}:8787"]
