"""A real OpenID provider for the sign-in tests: panva's ``oidc-provider`` from npm, run under the Node 22
the npm client tests install (tests/.npm-clients/node22), installed into its own git-ignored prefix
(tests/.oidc-provider) by :mod:`tests.identity.oidc_install` (``.ci/run``, or on first use), started on a
free 127.0.0.1 port and stopped by the test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.browser import browser  # noqa: F401 - the Chromium page fixture, for the sign-in tests
from tests.identity.oidc_install import PREFIX, Unavailable, install

SCRIPT = Path(__file__).parent / "provider.mjs"
CLIENT_ID = "subrelay-test"
CLIENT_SECRET = "test-only-client-secret-" + "x" * 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def oidc_node() -> str:
    """PATH for running the provider, with oidc-provider installed in tests/.oidc-provider."""
    try:
        return install()
    except Unavailable as exc:
        pytest.skip(f"no OpenID provider to sign in at: {exc}")


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
