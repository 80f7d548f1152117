"""subrelay as a package (issue 31): the wheel built from exactly what the Dockerfile copies (pyproject.toml,
README.md, proxy/, adapters/) and installed the three ways docs/deploy.md shows (a fresh venv with
`pip install dist/subrelay-*.whl`, `uv tool install`, `pipx install`; the doc's own lines, each in a HOME of
its own) runs `--version`, `serve` and a request through the mock upstream, and carries every data file of
the source tree. The version lives in one place (proxy/__init__.py); the package metadata, the CHANGELOG's
newest entry and the Kubernetes image tags follow it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from proxy import __version__
from tests.conftest import write_auth_file
from tests.deploy.test_containers import free_port, wait_for
from tests.docs.deploy_doc import block_with
from tests.mock_upstream import MockCodexServer, ServerThread

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("proxy", "adapters")
TIMINGS: dict[str, float] = {}


def data_files() -> list[Path]:
    """Every file the packages carry besides code, found in the source tree (a new one is covered as added)."""
    return sorted(path.relative_to(ROOT) for package in PACKAGES for path in (ROOT / package).rglob("*")
                  if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy holding only what deploy/Dockerfile copies, with docs/deploy.md's build line run in it (so no
    stale build/ dir or checkout extras reach the wheel); the wheel is in its dist/."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    started = time.monotonic()
    built = _sh(block_with("pip wheel"), source, _clean_env(tmp_path_factory.mktemp("build-home")))
    assert built.returncode == 0, built.stderr[-3000:]
    TIMINGS["wheel build"] = time.monotonic() - started
    return source


@pytest.fixture(scope="module")
def wheel(source: Path) -> Path:
    (found,) = (source / "dist").glob("subrelay-*.whl")
    return found


def _sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a doc block as a user would in bash, failing on its first failing line."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No SUBRELAY_/CODEX_/provider/venv variables from the caller and a HOME of the test's own; this
    venv's bin first on PATH (pip, uv, pipx are the test extras')."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUBRELAY_", "CODEX_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_", "PYTHON", "VIRTUAL_ENV",
                                "UV_", "PIPX_", "XDG_"))}
    home.mkdir(parents=True, exist_ok=True)
    path = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return {**env, "HOME": str(home), "PATH": path, **extra}


def test_the_wheel_carries_every_data_file_and_the_one_version(wheel: Path):
    assert wheel.name == f"subrelay-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [str(path) for path in data_files()]
    assert len(expected) >= 10 and not [path for path in expected if path not in names]
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "deploy/"))]
    metadata = zipfile.ZipFile(wheel).read(f"subrelay-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    assert "subrelay = proxy.server.cli:main" in zipfile.ZipFile(wheel).read(
        f"subrelay-{__version__}.dist-info/entry_points.txt").decode()


def test_the_version_is_written_once_and_followed_everywhere():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]  # no second copy
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "proxy.__version__"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == __version__  # the newest entry is this version
    for directory in ("kubernetes", "kubernetes/replicas"):
        kustomization = yaml.safe_load((ROOT / "deploy" / directory / "kustomization.yaml").read_text())
        assert [i["newTag"] for i in kustomization["images"] if i["name"] == "subrelay"] == [__version__], directory


def _serve_one_request(subrelay: Path, tmp_path: Path) -> None:
    """The installed `subrelay serve` answers health, a Chat request through the mock (with the shipped default
    instructions), its model list and its pages; SIGTERM stops it cleanly."""
    mock = MockCodexServer()
    server = ServerThread(mock).start()
    login = tmp_path / "codex-home"
    login.mkdir()
    write_auth_file(str(login / "auth.json"), mock.state.auth_file())
    port = free_port()
    env = _clean_env(tmp_path / "serve-home", CODEX_HOME=str(login), SUBRELAY_STATE_DIR=str(tmp_path / "state"),
                     SUBRELAY_CODEX_BASE_URL=f"{server.url}/backend-api/codex", SUBRELAY_AUTH_BASE_URL=server.url)
    process = subprocess.Popen([str(subrelay), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is None and httpx.get(url + "/healthz", timeout=2).status_code == 200,
                 "the installed subrelay's /healthz", 60, every=0.2)
        answer = httpx.post(url + "/v1/chat/completions", timeout=30,
                            json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi from a wheel"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        sent = mock.state.requests[-1]["body"]
        assert "hi from a wheel" in json.dumps(sent["input"])
        shipped = (ROOT / "adapters/codex/default_instructions.md").read_text().strip()
        assert sent["instructions"] == shipped  # adapters/codex/default_instructions.md came with the wheel
        models = {entry["id"] for entry in httpx.get(url + "/v1/models", timeout=10).json()["data"]}
        assert "gpt-5.5" in models  # adapters/codex/models.json
        for page in ("/account", "/admin", "/admin/admin.js", "/admin/ledger.js", "/admin/admin.css"):
            assert httpx.get(url + page, timeout=10).status_code == 200, page
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        server.stop()
    assert process.returncode == 0 and "Traceback" not in output, output[-3000:]


def _install_as_the_doc_says(needle: str, source: Path, home: Path, binary: str) -> Path:
    """Run docs/deploy.md's block containing ``needle`` in the source copy with HOME=home; it must print the
    version, and ``binary`` (relative to HOME) must be the installed command."""
    started = time.monotonic()
    done = _sh(block_with(needle), source, _clean_env(home))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    TIMINGS[needle] = time.monotonic() - started
    assert done.stdout.strip().splitlines()[-1] == f"subrelay {__version__}", done.stdout
    installed = home / binary
    assert installed.is_file() and str(ROOT) not in installed.resolve().read_text(errors="replace")[:400]
    return installed


def test_the_wheel_installed_with_pip_in_a_fresh_venv_runs_version_serve_and_a_request(source: Path, tmp_path):
    home = tmp_path / "home"
    subrelay = _install_as_the_doc_says("bin/pip install dist/subrelay-", source, home,
                                        ".local/share/subrelay/bin/subrelay")
    python = subrelay.parent / "python"
    env = _clean_env(home)
    # Every data file, read through importlib.resources from the installed copy, is the source tree's file.
    check = ("import importlib.resources as r, json, sys, proxy, adapters\n"
             "paths = json.loads(sys.argv[1])\n"
             "print(json.dumps({p: r.files(p.split('/')[0]).joinpath(p.split('/', 1)[1]).read_text() for p in paths}))\n"
             "print(proxy.__file__, adapters.__file__)")
    paths = [str(path) for path in data_files()]
    read = subprocess.run([str(python), "-c", check, json.dumps(paths)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    contents, where = read.stdout.splitlines()
    assert json.loads(contents) == {path: (ROOT / path).read_text() for path in paths}
    venv_dir = str(home / ".local/share/subrelay")
    assert str(ROOT) not in where and where.count(venv_dir) == 2  # the installed copy, not this checkout
    prices = subprocess.run([str(subrelay), "prices", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60)
    assert prices.returncode == 0 and json.loads(prices.stdout), prices.stderr  # proxy/money/prices.toml
    _serve_one_request(subrelay, tmp_path)


def test_uv_tool_install_of_the_wheel_puts_a_working_subrelay_on_path(source: Path, tmp_path):
    subrelay = _install_as_the_doc_says("uv tool install", source, tmp_path / "home", ".local/bin/subrelay")
    _serve_one_request(subrelay, tmp_path)


def test_pipx_install_of_the_wheel_puts_a_working_subrelay_on_path(source: Path, tmp_path):
    subrelay = _install_as_the_doc_says("pipx install", source, tmp_path / "home", ".local/bin/subrelay")
    _serve_one_request(subrelay, tmp_path)
    print("\npackage timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
