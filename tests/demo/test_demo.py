"""``subrelay demo`` (issue 27 item 7): with no account anywhere, subrelay runs in front of the built-in
mock upstream, with a team whose members are signed in as different ChatGPT accounts: one answered by the
Codex mock, one moved to the API-key mock by the quota fallback, one whose plan is used up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from proxy.config.settings import settings_from_env
from proxy.server.app import create_app
from proxy.server.demo import start
from tests.mock_upstream import ServerThread
from tests.redis_server import free_port

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def demo(tmp_path):
    running = start(str(tmp_path / "demo"))
    yield running
    running.close()


def test_the_demo_team_shows_each_upstream(demo):
    with ServerThread(create_app(settings_from_env(demo.env))) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        def ask(key: str | None) -> httpx.Response:
            return client.post("/v1/chat/completions", json=CHAT,
                               headers={"Authorization": f"Bearer {key}"} if key else {})

        alice, bob, carol = (ask(demo.member_keys[name]) for name in ("alice", "bob", "carol"))
        owner, nobody = ask(demo.owner_key), ask(None)
        admin = client.get("/api/admin/users", headers={"x-admin-key": demo.admin_key})
        account = client.get("/api/llm/subscription/openai/status", headers={"Authorization": f"Bearer {demo.member_keys['alice']}"})
    assert alice.status_code == 200 and alice.headers["x-subrelay-route"] == "codex/gpt-5.5"
    assert alice.json()["choices"][0]["message"]["content"] == "Hello! You said: hi"
    assert bob.status_code == 200 and bob.headers["x-subrelay-route"] == "openai/gpt-5.5"  # the quota fallback
    assert carol.status_code == 429 and carol.json()["error"]["type"] == "usage_limit_reached"
    assert owner.status_code == 200 and nobody.status_code == 401
    assert sorted(user["name"] for user in admin.json()["data"]) == ["alice", "bob", "carol"]
    assert "alice@demo.example" in account.text  # alice's own login, not the owner's


def test_the_demo_reads_nothing_real(demo):
    """Every address the demo gives subrelay is loopback, and its files are in the demo directory."""
    for name, value in demo.env.items():
        if value.startswith("http"):
            assert value.startswith("http://127.0.0.1:"), name
        elif "/" in value:
            assert value.startswith(demo.directory), name


def test_subrelay_demo_starts_and_says_where_things_are(tmp_path):
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "sk-proj-" + "r" * 40}  # a real-looking key the demo must not use
    process = subprocess.Popen([sys.executable, "-m", "proxy", "demo", "--port", str(port), "--dir", str(tmp_path / "d")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        deadline = time.monotonic() + 60
        while "listening on" not in said and time.monotonic() < deadline and process.poll() is None:
            said += process.stderr.readline()
        assert "listening on" in said, said
        key = next(line.split()[2] for line in said.splitlines() if line.strip().startswith("alice's key"))
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT, timeout=30,
                            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and "Hello! You said: hi" in answer.text
        status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert status.status_code == 200
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert "sk-proj-" not in said


def test_the_demo_docs_examples_show_what_they_say(demo):
    """docs/demo.md's curl block, run as written against the demo (its address rewritten to the test's)."""
    import re
    import shutil
    from pathlib import Path

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    page = (Path(__file__).parents[2] / "docs" / "demo.md").read_text()
    block = re.search(r"checked by tests/demo/test_demo.py -->\n```bash\n(.*?)```", page, re.S)[1]
    with ServerThread(create_app(settings_from_env(demo.env))) as server:
        env = {**os.environ, "ALICE_KEY": demo.member_keys["alice"], "BOB_KEY": demo.member_keys["bob"],
               "CAROL_KEY": demo.member_keys["carol"]}
        result = subprocess.run(["bash", "-c", "set -eo pipefail\n" + block.replace("http://127.0.0.1:8787", server.url)],
                                capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Hello! You said: hi" in out and "x-subrelay-route: openai/gpt-5.5" in out.lower()
    assert "usage_limit_reached" in out
