"""Clients from npm, installed inside the test run: openai-node, the real Codex CLI and Claude Code.

They are installed with npm into ``tests/.npm-clients`` (git-ignored; reused while the pinned versions
match). The CLIs run with their own ``HOME`` (and ``CODEX_HOME``), telemetry off, and ``HTTP(S)_PROXY``
pointed at a dead loopback port, so the only thing they can reach is subrelay on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

PACKAGES = {"@openai/codex": "0.169.0", "openai": "7.57.0", "@anthropic-ai/claude-code": "2.1.197"}
PREFIX = Path(__file__).parent.parent / ".npm-clients"
DEAD_PROXY = "http://127.0.0.1:9"
NODE_SCRIPT = r"""
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0 });
const answer = await client.responses.create({ model: "gpt-5.4", input: "hi from node" });
const stream = await client.responses.create({ model: "gpt-5.4", input: "stream from node", stream: true });
const kinds = []; let text = "";
for await (const event of stream) { kinds.push(event.type); if (event.type === "response.output_text.delta") text += event.delta; }
console.log(JSON.stringify({ text: answer.output_text, status: answer.status, kinds, streamed: text }));
"""


@pytest.fixture(scope="session")
def npm_clients() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so openai-node and the Codex CLI cannot be installed")
    wanted = {"dependencies": PACKAGES}
    manifest = PREFIX / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("dependencies") != PACKAGES or \
            not (PREFIX / "node_modules" / ".bin" / "codex").exists():
        PREFIX.mkdir(exist_ok=True)
        manifest.write_text(json.dumps({"name": "subrelay-test-clients", "private": True, **wanted}))
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return PREFIX


def _isolated_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(HOME=str(home), HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, ALL_PROXY=DEAD_PROXY,
               http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def test_openai_node_responses_create_and_stream(npm_clients, proxy_url, tmp_path):
    script = npm_clients / "responses.mjs"
    script.write_text(NODE_SCRIPT)
    result = subprocess.run(["node", str(script), proxy_url], capture_output=True, text=True, timeout=60,
                            env=_isolated_env(tmp_path), cwd=npm_clients)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == "completed" and seen["text"] == "Hello! You said: hi from node"
    assert seen["kinds"][0] == "response.created" and seen["kinds"][-1] == "response.completed"
    assert seen["streamed"] == "Hello! You said: stream from node"


@pytest.fixture
def codex_cli(npm_clients, proxy_settings, tmp_path):
    """``codex exec`` configured with a subrelay provider block, as the README documents it."""
    with ServerThread(create_app(proxy_settings)) as proxy:
        home = tmp_path / "home"
        codex_home = tmp_path / "codex-home"
        home.mkdir()
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(
            'model = "gpt-5.4"\nmodel_provider = "subrelay"\n\n[model_providers.subrelay]\nname = "openai"\n'
            f'base_url = "{proxy.url}/v1"\nwire_api = "responses"\nenv_key = "SUBRELAY_API_KEY"\n')
        env = {**_isolated_env(home), "CODEX_HOME": str(codex_home), "SUBRELAY_API_KEY": "unused"}
        workdir = tmp_path / "work"
        workdir.mkdir()

        def run(prompt: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(npm_clients / "node_modules" / ".bin" / "codex"), "exec", "--skip-git-repo-check",
                                   prompt], capture_output=True, text=True, timeout=180, env=env, cwd=workdir,
                                  stdin=subprocess.DEVNULL)
        yield run


def test_codex_cli_text_turn(codex_cli, mock_codex):
    result = codex_cli("say hi")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    sent = mock_codex.state.requests[-1]
    assert sent["headers"]["originator"] == "subrelay"  # subrelay names itself upstream, not as the CLI
    assert sent["body"]["store"] is False and sent["body"]["stream"] is True


def test_codex_cli_tool_round_trip(codex_cli, mock_codex):
    result = codex_cli('run it [[call:exec_command:{"cmd":"echo subrelay-tool-ok"}]]')
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    bodies = [r["body"] for r in mock_codex.state.requests]
    assert len(bodies) == 2
    outputs = [item for item in bodies[1]["input"] if item.get("type") == "function_call_output"]
    assert outputs and "subrelay-tool-ok" in json.dumps(outputs[-1]["output"])  # the CLI ran the command…
    assert "The tool said:" in result.stdout and "subrelay-tool-ok" in result.stdout  # …and got the final answer


@pytest.fixture
def claude_code(npm_clients, proxy_settings, tmp_path):
    """``claude -p`` pointed at subrelay with the documented variables, Codex models behind it."""
    with ServerThread(create_app(proxy_settings)) as proxy:
        home = tmp_path / "home"
        home.mkdir()
        env = {**_isolated_env(home), "ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_API_KEY": "sk-ant-client-key-stays-here",
               "ANTHROPIC_MODEL": "gpt-5.5", "ANTHROPIC_SMALL_FAST_MODEL": "gpt-5.4-mini", "DISABLE_TELEMETRY": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
        workdir = tmp_path / "work"
        workdir.mkdir()

        def run(prompt: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
            result = subprocess.run([str(npm_clients / "node_modules" / ".bin" / "claude"), "-p", prompt, *extra],
                                    capture_output=True, text=True, timeout=180, env=env, cwd=workdir,
                                    stdin=subprocess.DEVNULL)
            return result, workdir
        yield run


def test_claude_code_text_turn(claude_code, mock_codex):
    result, _ = claude_code("say hi")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Hello! You said:" in result.stdout and "say hi" in result.stdout
    sent = mock_codex.state.requests[-1]
    assert sent["body"]["model"] == "gpt-5.5" and sent["headers"]["originator"] == "subrelay"
    assert "sk-ant-client-key-stays-here" not in json.dumps(sent)  # the client's key never goes upstream
    assert not any(item.get("role") == "system" for item in sent["body"]["input"])


def test_claude_code_reads_a_file_with_its_tool_and_answers(claude_code, mock_codex, tmp_path):
    notes = tmp_path / "work" / "notes.txt"
    notes.write_text("The secret word is tangerine.\n")
    result, _ = claude_code(f'read it [[call:Read:{{"file_path":"{notes}"}}]]', "--allowedTools", "Read")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "The tool said:" in result.stdout and "tangerine" in result.stdout
    outputs = [item for r in mock_codex.state.requests for item in r["body"].get("input", [])
               if item.get("type") == "function_call_output"]
    assert outputs and "tangerine" in json.dumps(outputs[-1]["output"])  # Claude Code ran Read and sent the result
