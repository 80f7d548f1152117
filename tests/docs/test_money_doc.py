"""Every example in docs/money.md runs: its TOML parses as subrelay.toml, its Python holds, its shell
commands succeed against a fresh state directory, and its refusal JSON has the fields a real one has."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from proxy.config.file import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "money.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(kind: str) -> list[str]:
    found = [body for lang, body in BLOCK.findall(DOC.read_text()) if lang == kind]
    assert found, f"docs/money.md has no {kind} example"
    return found


def test_every_toml_example_is_a_valid_subrelay_toml():
    for body in blocks("toml"):
        parse_config(tomllib.loads(body), "docs/money.md")


def test_every_python_example_holds():
    for body in blocks("python"):
        exec(compile(body, "docs/money.md", "exec"), {})


def test_every_shell_example_runs(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "SUBRELAY_STATE_DIR": str(tmp_path / "state")}
    for body in blocks("sh"):
        for line in body.strip().splitlines():
            words = shlex.split(line)
            assert words[0] == "subrelay"
            done = subprocess.run([sys.executable, "-m", "proxy", *words[1:]], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, f"{line}: {done.stderr}"
            if words[1:3] == ["users", "show"]:
                assert "budget        month: $0.00 of $20.00 spent, $20.00 left" in done.stdout
                assert "max effort    high" in done.stdout


def test_the_refusal_example_has_the_fields_a_real_refusal_has():
    from proxy.money.budgets import Budget
    from proxy.state.team import Refusal, User
    from proxy.team.spend import BudgetRule, refusal_error

    real = refusal_error(BudgetRule("ana", Budget("month", 20_000_000), "ana:usd:month:2026-12"),
                         Refusal("ana:usd:month:2026-12", 60.0, 19_960_000), User("ana", "h", "k")).to_dict()
    shown = json.loads(blocks("json")[0])
    assert set(shown["error"]) == set(real["error"])
    assert real["error"]["left_usd"] == shown["error"]["left_usd"] == "0.04"
