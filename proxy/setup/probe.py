"""Running a real client once, bounded, to see whether the configuration just written works.

The client runs in an empty temporary directory (so no project-level settings of the directory
setup was started in hide the user-level ones written here) with the caller's environment, so the
client's own home variables (``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``HOME``…) are the ones setup used.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Mapping

CLIENT_TIMEOUT = 120.0  # seconds: a client's start-up on a loaded machine, plus one local request


@dataclass
class CheckResult:
    ok: bool
    lines: list[str] = field(default_factory=list)  # what was checked, or exactly what is wrong

    @classmethod
    def failed(cls, *lines: str) -> "CheckResult":
        return cls(False, list(lines))


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def find(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH"))


def run(argv: list[str], env: Mapping[str, str], timeout: float = CLIENT_TIMEOUT) -> Ran | str:
    """The client's exit status and output, or a sentence saying why it could not be run."""
    with tempfile.TemporaryDirectory(prefix="subrelay-setup-check-") as workdir:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(env),
                                  cwd=workdir, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(argv[:3])}` did not finish within {timeout:.0f} s"
        except OSError as exc:
            return f"`{argv[0]}` could not be started: {exc.strerror or exc}"
    return Ran(done.returncode, done.stdout, done.stderr)


def tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n    ".join(kept) if kept else "(no output)"
