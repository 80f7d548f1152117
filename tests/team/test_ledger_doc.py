"""Every shell example in docs/ledger.md runs, in order, against a real server whose member alice has made
a few requests (one fell back): each must exit 0, and the ones that verify must say OK."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.team.conftest import ADMIN_KEY, ask

DOC = Path(__file__).parents[2] / "docs" / "ledger.md"
TURN = [{"role": "user", "content": "hi"}]


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)


def test_the_ledger_doc_has_examples():
    assert len(shell_blocks()) >= 6


def test_every_shell_example_in_the_ledger_doc_runs(ledger_team, tmp_path, state_dir):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the doc's examples use it)")
    base, admin, keys, upstream = ledger_team
    assert ask(base, keys["alice"], TURN).status_code == 200
    upstream.state.script.append({"status": 429, "body": {"error": {"message": "slow down", "type": "rate_limit"}}})
    assert ask(base, keys["alice"], TURN).status_code == 200
    assert ask(base, keys["bob"], TURN).status_code == 200
    env = {**os.environ, "SUBRELAY": base, "ADMIN_KEY": ADMIN_KEY, "ALICE_KEY": keys["alice"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for block in shell_blocks():
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        outputs.append(done.stdout)
    text = "\n".join(outputs)
    assert "requests.csv: requests: OK: 3 entries" in text
    assert "alice.jsonl: requests: OK: 2 entries" in text and "audit: OK" in text
    assert '"action":"user.change"' in text and "rpm: none -> 120" in text
    own = next(out for block, out in zip(shell_blocks(), outputs) if "/api/llm/requests" in block)
    assert '"person":"alice"' in own and '"person":"bob"' not in own
