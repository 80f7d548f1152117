"""Instructions per request on the three probe paths, in one short callgrind run each: the CI smoke prints
them so a regression shows in every run (``tests/benchmarks/test_instruction_smoke.py``).

    .venv/bin/python -m benchmarks.probes.instruction_smoke [--requests 100]

Each path (a small non-stream completion, a 50-delta stream relayed, the same stream translated from Codex)
runs ``inproc_request.py --mark`` under callgrind with ``--dump-before=getppid``: the harness calls getppid()
right before and after its measured requests, so the middle dump holds those requests alone, start-up and
warm-up excluded, in one process (``instructions_ab.sh`` runs two and subtracts: its figures agree within
about 1%). The three runs go in parallel; each starts a mock on a free loopback port and stops it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = {"non-stream": [], "50-delta stream": ["--stream"], "Chat -> Codex 50-delta stream": ["--stream", "--codex"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the benchmark mock did not listen on {port}")


def middle_total(out: Path) -> int:
    """The ``totals:`` of the dump between the two marks (callgrind numbers dumps ``out.1``, ``out.2``…)."""
    text = Path(f"{out}.2").read_text()
    for line in text.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}.2")


def count(path_args: list[str], port: int, requests: int, workdir: Path, name: str) -> int:
    out = workdir / f"{name.replace(' ', '_').replace('>', '')}.out"
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=getppid",
         sys.executable, str(ROOT / "benchmarks/probes/inproc_request.py"), "--root", str(ROOT), "--port", str(port),
         "--requests", str(requests), "--mark", *path_args],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    if result.returncode != 0:
        raise RuntimeError(f"{name}: the harness failed: {(result.stdout + result.stderr)[-1500:]}")
    return middle_total(out) // requests


def measure(requests: int = 100) -> dict[str, int]:
    """Instructions per request for each path (raises when valgrind or the harness fails)."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed")
    port = free_port()
    mock = subprocess.Popen([sys.executable, "-m", "benchmarks.mock", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        with tempfile.TemporaryDirectory(prefix="subrelay-instructions-") as tmp, ThreadPoolExecutor(3) as pool:
            futures = {name: pool.submit(count, args, port, requests, Path(tmp), name) for name, args in PATHS.items()}
            return {name: future.result() for name, future in futures.items()}
    finally:
        mock.terminate()
        mock.wait(10)


def report(figures: dict[str, int]) -> str:
    return "instructions per request (callgrind, in process): " + ", ".join(
        f"{name} {value:,}" for name, value in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    print(report(measure(args.requests)))


if __name__ == "__main__":
    main()
