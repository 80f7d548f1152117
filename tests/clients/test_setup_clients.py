"""``subrelay setup codex`` / ``setup claude-code`` leave the real CLIs (newest versions, from
test_npm_clients' harness) working against subrelay with nothing else edited by hand: each CLI runs
with its own home (``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``HOME``), no subrelay variable in its
environment, and ``HTTP(S)_PROXY`` at a dead loopback port. subrelay checks keys here, so the key
setup writes is the only way in. Running setup twice changes nothing; ``--undo`` restores the
user's file byte for byte; a check that fails says why.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.server.app import create_app
from tests.clients.test_npm_clients import _isolated_env, npm_clients  # noqa: F401 (npm_clients is a fixture)
from tests.mock_upstream import ServerThread

KEY = "sk-subrelay-setup-test-0123456789abcdef"
USER_CODEX_CONFIG = b'# my own settings\nmodel = "o3"\napproval_policy = "never"\n\n[tui]\nnotifications = true\n'
USER_CLAUDE_SETTINGS = b'{"permissions": {"allow": ["Read"]}, "env": {"MY_VAR": "kept"}}'


@pytest.fixture
def keyed_subrelay(proxy_settings):
    with ServerThread(create_app(dataclasses.replace(proxy_settings, api_keys=(KEY,)))) as proxy:
        yield proxy.url


@pytest.fixture
def homes(tmp_path, npm_clients):  # noqa: F811
    """The environment a user's shell would have: the CLIs on PATH, their homes, no subrelay variable."""
    home, codex_home, claude_dir, work = (tmp_path / name for name in ("home", "codex-home", "claude", "work"))
    for folder in (home, codex_home, claude_dir, work):
        folder.mkdir()
    env = _isolated_env(home, npm_clients)
    env = {k: v for k, v in env.items() if not k.startswith(("SUBRELAY_", "ANTHROPIC_", "OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(codex_home), CLAUDE_CONFIG_DIR=str(claude_dir), DISABLE_TELEMETRY="1",
               DISABLE_AUTOUPDATER="1", DISABLE_ERROR_REPORTING="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
               PATH=f"{Path(npm_clients.bin('codex')).parent}{os.pathsep}{env['PATH']}")
    return env, codex_home, claude_dir, work


def _setup(env: dict, *args: str) -> subprocess.CompletedProcess:
    """The command as a user types it, with their key in SUBRELAY_API_KEY for this one command."""
    return subprocess.run([sys.executable, "-m", "proxy", "setup", *args], capture_output=True, text=True,
                          timeout=300, env={**env, "SUBRELAY_API_KEY": KEY}, stdin=subprocess.DEVNULL, check=False)


def test_setup_codex_then_the_real_cli_runs_a_turn(homes, keyed_subrelay, mock_codex, npm_clients):  # noqa: F811
    env, codex_home, _, work = homes
    config = codex_home / "config.toml"
    config.write_bytes(USER_CODEX_CONFIG)
    done = _setup(env, "codex", "--url", keyed_subrelay)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check: ok" in done.stdout and "Codex reads subrelay's list" in done.stdout
    assert KEY not in done.stdout + done.stderr  # the key is written, never shown
    written = config.read_bytes()
    assert written.startswith(b"# my own settings\n") and b"approval_policy" in written  # the user's lines stay
    assert oct(config.stat().st_mode & 0o777) == "0o600"  # it holds the key now

    turn = subprocess.run([npm_clients.bin("codex"), "exec", "--skip-git-repo-check", "say hi"], capture_output=True,
                          text=True, timeout=180, env=env, cwd=work, stdin=subprocess.DEVNULL, check=False)
    assert turn.returncode == 0, (turn.stdout + turn.stderr)[-3000:]
    assert "Hello! You said: say hi" in turn.stdout
    assert "Model metadata for" not in turn.stdout + turn.stderr  # it read subrelay's model list
    assert mock_codex.state.requests[-1]["body"]["model"] == "gpt-5.5"

    again = _setup(env, "codex", "--url", keyed_subrelay, "--no-check")
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert config.read_bytes() == written
    undone = _setup(env, "codex", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert config.read_bytes() == USER_CODEX_CONFIG
    assert not list(codex_home.glob("config.toml.subrelay-*"))


def test_setup_claude_code_then_the_real_cli_answers(homes, keyed_subrelay, mock_codex, npm_clients):  # noqa: F811
    env, _, claude_dir, work = homes
    settings = claude_dir / "settings.json"
    settings.write_bytes(USER_CLAUDE_SETTINGS)
    done = _setup(env, "claude-code", "--url", keyed_subrelay)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check: ok" in done.stdout and "context window of 272k" in done.stdout  # from the catalogue entry
    written = settings.read_bytes()
    assert b'"MY_VAR": "kept"' in written and b'"allow"' in written

    # the settings win over a shell that still points elsewhere (and holds some other key)
    shell = {**env, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "sk-ant-elsewhere-0123456789"}
    turn = subprocess.run([npm_clients.bin("claude"), "-p", "say hi"], capture_output=True, text=True, timeout=180,
                          env=shell, cwd=work, stdin=subprocess.DEVNULL, check=False)
    assert turn.returncode == 0, (turn.stdout + turn.stderr)[-3000:]
    assert "Hello! You said:" in turn.stdout and "say hi" in turn.stdout
    assert mock_codex.state.requests[-1]["body"]["model"] == "gpt-5.5"

    again = _setup(env, "claude-code", "--url", keyed_subrelay, "--no-check")
    assert again.returncode == 0 and "unchanged" in again.stdout and settings.read_bytes() == written
    assert _setup(env, "claude-code", "--undo").returncode == 0
    assert settings.read_bytes() == USER_CLAUDE_SETTINGS


@pytest.mark.parametrize("client,said", [("claude-code", "could not count tokens at"),
                                         ("codex", "provider endpoints are unreachable")])
def test_setup_says_what_is_wrong_when_the_client_cannot_reach_subrelay(homes, keyed_subrelay, client, said):
    """A shell whose HTTPS_PROXY catches loopback too (no NO_PROXY): setup itself reaches subrelay,
    the client cannot, and the check says so in the client's own words."""
    env, _, _, _ = homes
    blocked = {k: v for k, v in env.items() if k.lower() != "no_proxy"}
    done = _setup(blocked, client, "--url", keyed_subrelay)
    assert done.returncode == 1
    assert "check: FAILED" in done.stdout and said in done.stdout, done.stdout
    assert ("Connection error" if client == "claude-code" else "connect failed") in done.stdout

DOC = Path(__file__).parents[2] / "docs" / "setup.md"


def test_every_example_in_the_setup_doc_runs(homes, keyed_subrelay, mock_codex):
    """docs/setup.md's shell blocks, in order, as a user on the server's machine runs them: the
    server's SUBRELAY_API_KEYS and SUBRELAY_PORT in the environment, the CLIs on PATH."""
    env, codex_home, claude_dir, _ = homes
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4
    env = {**env, "SUBRELAY_API_KEYS": KEY, "SUBRELAY_PORT": keyed_subrelay.rsplit(":", 1)[1], "MY_SUBRELAY_KEY": KEY}
    cli = f"{shlex.quote(sys.executable)} -m proxy"
    outputs = []
    for block in blocks:
        script = f'subrelay() {{ {cli} "$@"; }}\nset -eo pipefail\n{block}\nprintenv OPENAI_BASE_URL || true\n'
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False)
        assert done.returncode == 0, block + done.stdout + done.stderr
        outputs.append(done.stdout)
    assert outputs[0].count("check: ok") == 2
    assert "[model_providers.subrelay]" in outputs[1] and "restored" not in outputs[1]  # created, so removed
    assert "removed" in outputs[1] and not (codex_home / "config.toml").exists()
    assert json.loads((claude_dir / "settings.json").read_text())["env"]["ANTHROPIC_AUTH_TOKEN"] == KEY
    assert outputs[3].strip().endswith(f"{keyed_subrelay}/v1")  # the eval set the variable in that shell


def test_the_readme_setup_line_runs(homes, keyed_subrelay, mock_codex):
    env, codex_home, _, _ = homes
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", readme.replace("\n   ", "\n"), re.S) if "subrelay setup" in b]
    env = {**env, "SUBRELAY_API_KEYS": KEY, "SUBRELAY_PORT": keyed_subrelay.rsplit(":", 1)[1]}
    script = f'subrelay() {{ {shlex.quote(sys.executable)} -m proxy "$@"; }}\nset -e\n' + block.replace(".venv/bin/subrelay", "subrelay")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0 and "check: ok" in done.stdout, done.stdout + done.stderr
    assert (codex_home / "config.toml").exists()
