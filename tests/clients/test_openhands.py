"""The OpenHands SDK (``openhands-sdk`` + ``openhands-tools``) as its plainest recipe uses subrelay:
``LLM(model="openai/gpt-5.5", base_url=…/v1)``, which LiteLLM sends to ``/v1/responses``, with
``stream`` off (its default) and on, and a terminal-tool round trip (the mock asks for one command,
the SDK's terminal runs it, the mock answers from the tool's output).

The SDK needs Python 3.12 or newer, and this project's venv may be 3.11: the clients go into their own
venv, ``tests/.openhands-venv`` (git-ignored, about 660 MB, under two minutes on a first run, reused
afterwards), made from the first Python 3.12+ found (``python3.13``/``python3.12`` on PATH, then
pyenv's). Without one, or when the install fails, the tests skip saying why."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

VENV = Path(__file__).parent.parent / ".openhands-venv"
PINS = ["openhands-sdk==1.58.2", "openhands-tools==1.58.2"]
SCRIPT = r"""
import json, sys
from openhands.sdk import LLM, Agent, Conversation, Tool
from openhands.sdk.event import ActionEvent, ObservationEvent, MessageEvent
from openhands.tools.terminal import TerminalTool

base_url, stream, workdir = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
llm = LLM(model="openai/gpt-5.5", base_url=base_url, api_key="unused", stream=stream,
          usage_id="subrelay-test", num_retries=0)
agent = Agent(llm=llm, tools=[Tool(name=TerminalTool.name, params={"terminal_type": "subprocess"})])
events = []
conversation = Conversation(agent=agent, workspace=workdir, callbacks=[events.append], visualizer=None)
conversation.send_message('Run it: [[call:terminal:{"command": "echo hello-from-the-terminal-tool"}]]')
conversation.run()
seen = {"actions": [e.tool_name for e in events if isinstance(e, ActionEvent)],
        "observations": [str(e.observation)[:400] for e in events if isinstance(e, ObservationEvent)],
        "messages": [" ".join(getattr(c, "text", "") for c in e.llm_message.content)
                     for e in events if isinstance(e, MessageEvent) and e.llm_message.role == "assistant"],
        "status": str(conversation.state.execution_status)}
print("RESULT " + json.dumps(seen))
"""


def _python312() -> str | None:
    candidates = [shutil.which("python3.13"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~root/.pyenv/versions/3.1[2-9]*/bin/python")), reverse=True)]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version == "True":
            return candidate
    return None


def _say(request, line: str) -> None:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}", flush=True)


@pytest.fixture(scope="session")
def openhands_python(request) -> str:
    python = VENV / "bin" / "python"
    ready = VENV / ".installed"
    if ready.exists() and ready.read_text().split() == PINS and python.exists():
        return str(python)
    interpreter = _python312()
    if interpreter is None:
        pytest.skip("the OpenHands SDK needs Python >= 3.12 and none was found (python3.12/python3.13, pyenv)")
    _say(request, f"OpenHands SDK: installing {' '.join(PINS)} into {VENV} with {interpreter} "
                  "(about 660 MB on a first run; under two minutes) …")
    subprocess.run([interpreter, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0:
        pytest.skip(f"the OpenHands SDK would not install: {result.stderr.strip().splitlines()[-1:]}")
    ready.write_text(" ".join(PINS))
    return str(python)


@pytest.fixture
def proxy_v1(proxy_settings):
    with ServerThread(create_app(proxy_settings)) as thread:
        yield f"{thread.url}/v1"


@pytest.mark.parametrize("stream", [False, True], ids=["stream-off", "stream-on"])
def test_openhands_sdk_runs_a_terminal_tool_round_trip(openhands_python, proxy_v1, mock_codex, tmp_path, stream):
    env = {**os.environ, "HOME": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "OPENHANDS_SUPPRESS_BANNER": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = subprocess.run([openhands_python, "-c", SCRIPT, proxy_v1, "1" if stream else "0", str(workdir)],
                            capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (result.stdout[-3000:], result.stderr[-3000:])
    seen = json.loads(lines[-1][len("RESULT "):])
    assert seen["actions"] == ["terminal"], seen
    assert any("hello-from-the-terminal-tool" in observation for observation in seen["observations"]), seen
    assert any("hello-from-the-terminal-tool" in message for message in seen["messages"]), seen  # read the tool's output
    assert "finished" in seen["status"].lower(), seen
    turns = [r for r in mock_codex.state.requests if r.get("path") != "compact"]
    assert len(turns) >= 2 and turns[-1]["body"]["input"][-1]["type"] == "function_call_output"  # the call, then its output
