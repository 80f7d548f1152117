"""How a request's cost grows with the work (issue 33, item 3): instructions per request with 10 and 10,000
users in the team store, and with a 1 KB, 1 MB and 10 MB request body; one callgrind run per row
(``inproc_request.py --mark``, as ``instruction_smoke.py``). Memory per stream: ``stalled_streams.py``.

    .venv/bin/python -m benchmarks.probes.scaling [users|bodies]   # both tables: ~10 min on a quiet 2-core machine
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.probes.instruction_smoke import ROOT, free_port, middle_total, wait_listening


def per_request(port: int, requests: int, *extra: str, env: dict[str, str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="subrelay-scaling-") as tmp:
        out = Path(tmp) / "cg.out"
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=getppid", sys.executable,
             str(ROOT / "benchmarks/probes/inproc_request.py"), "--root", str(ROOT), "--port", str(port),
             "--requests", str(requests), "--mark", *extra],
            capture_output=True, text=True, timeout=3600, env={**os.environ, **(env or {})})
        if result.returncode != 0:
            raise RuntimeError((result.stdout + result.stderr)[-1500:])
        return middle_total(out) // requests


def fill(users: int, directory: str, port: int) -> None:
    """The store made once, outside callgrind (the rows below reuse it)."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks/probes/inproc_request.py"), "--root", str(ROOT),
                    "--port", str(port), "--requests", "1", "--team"], check=True, capture_output=True,
                   env={**os.environ, "TEAM_USERS": str(users), "TEAM_STATE_DIR": directory})


def main() -> None:
    only = sys.argv[1] if len(sys.argv) > 1 else ""  # "users" or "bodies": one table
    port = free_port()
    mock = subprocess.Popen([sys.executable, "-m", "benchmarks.mock", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        if only != "bodies":
            users_table(port)
        if only != "users":
            bodies_table(port)
    finally:
        mock.terminate()
        mock.wait(10)


def users_table(port: int) -> None:
    print("| users in the store | instructions / request (team member, rpm/tpm/daily limits, ledger on) |")
    print("|---:|---:|")
    for users in (10, 10_000):
        with tempfile.TemporaryDirectory(prefix="subrelay-scaling-store-") as state:
            fill(users, state, port)
            figure = per_request(port, 200, "--team", env={"TEAM_STATE_DIR": state})
        print(f"| {users:,} | {figure:,} |", flush=True)


def bodies_table(port: int) -> None:
    print()
    print("| request body | instructions / request | per KB of body |")
    print("|---:|---:|---:|")
    for size, label, requests in ((1_000, "1 KB", 200), (1_000_000, "1 MB", 20), (10_000_000, "10 MB", 4)):
        figure = per_request(port, requests, "--body-bytes", str(size))
        print(f"| {label} | {figure:,} | {figure / (size / 1000):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
