"""The `sh` examples of docs/deploy.md, for the tests that run them (tests/deploy/test_package.py,
tests/deploy/test_containers.py, tests/docs/test_deploy_doc.py): one place that finds a block by what it
runs, so a test drives the doc's own words and a reworded doc breaks the test, not the promise."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def sh_blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text())


def block_with(text: str) -> str:
    """The one `sh` block containing ``text``."""
    found = [block for block in sh_blocks() if text in block]
    assert len(found) == 1, f"docs/deploy.md: {len(found)} sh blocks contain {text!r}"
    return found[0]


def command_with(text: str) -> list[str]:
    """The words of the one command line (of any block) that contains ``text``."""
    lines = [line for block in sh_blocks() for line in block.replace("\\\n", " ").splitlines() if text in line]
    assert len(lines) == 1, f"docs/deploy.md: {len(lines)} command lines contain {text!r}"
    return shlex.split(lines[0], comments=True)
