"""The several-replicas deployments checked offline (issue 20): the Kubernetes variant rendered and
validated against the schemas, HAProxy's config checked by the real haproxy, the compose profile's
promises read from the file. The compose profile runs for real in test_containers.py; no Kubernetes
cluster runs here, so the rollout itself is not exercised (docs/deploy.md says so)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_deploy import render_kustomization

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
BIN = Path(sys.executable).parent


def test_the_replicas_manifests_render_and_validate(tmp_path):
    validator = shutil.which("kubernetes-validate") or str(BIN / "kubernetes-validate")
    if not os.path.exists(validator):
        pytest.skip("kubernetes-validate is not installed (the test extras install it)")
    documents = render_kustomization(DEPLOY / "kubernetes" / "replicas")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run([validator, "--strict", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    assert {"StatefulSet", "PodDisruptionBudget", "Secret", "Deployment", "Service", "NetworkPolicy"} <= set(by_kind)
    deployment = by_kind["Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item for item in container["env"]}
    assert env["SUBRELAY_REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@")
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "subrelay-redis"
    assert not deployment["spec"]["template"]["spec"].get("initContainers")  # no login file: logins are in Redis
    redis = by_kind["StatefulSet"][0]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendfsync") + 1] == "always" and args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction" and "--requirepass" in args
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    secrets = {s["metadata"]["name"]: s["stringData"] for s in by_kind["Secret"]}
    assert "SUBRELAY_SECRET_KEY" in secrets["subrelay"] and "password" in secrets["subrelay-redis"]
    assert by_kind["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


def test_the_compose_profile_runs_redis_with_aof_three_replicas_and_haproxy():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert "profiles" not in services["subrelay"]  # the single-replica service is unchanged
    profile = {name for name, service in services.items() if "replicas" in service.get("profiles", [])}
    assert profile == {"redis", "subrelay-1", "subrelay-2", "subrelay-3", "haproxy"}
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "--maxmemory-policy noeviction" in command and "--requirepass" in command
    assert "ports" not in services["redis"]  # reachable by the replicas only
    for name in ("subrelay-1", "subrelay-2", "subrelay-3"):
        assert "env_file" not in services[name] and "SUBRELAY_SECRET_KEY" in services[name]["environment"]
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["haproxy"]["ports"] == ["${SUBRELAY_REPLICAS_PUBLISH:-127.0.0.1:8790}:8787"]
    example = (DEPLOY / "env.example").read_text()
    assert "\nREDIS_PASSWORD=" in example and "\nSUBRELAY_SECRET_KEY=" in example


def test_haproxy_accepts_the_config_and_checks_readiness(tmp_path):
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run does it)")
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert "uri /readyz" in text and text.count("server subrelay-") == 3
    result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
