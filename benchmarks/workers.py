"""Throughput with 1 and 2 workers on this machine: ``python -m benchmarks.workers [--quick]``.

Same mock, same driver and same interleaving idea as ``benchmarks.run``: for each worker count,
subrelay is started with ``--workers N`` and driven at concurrency 50 with small non-stream
completions and with 50-delta streams; runs alternate between the two configurations. On a 2-core
machine the driver and the mock share the cores with subrelay, so this shows the headroom a second
worker buys here, not what it buys on a bigger host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .run import HERE, MESSAGES, Server, drive, start, start_mock


def start_subrelay(workdir: Path, mock: Server, workers: int) -> Server:
    config = workdir / f"subrelay-{workers}.toml"
    config.write_text(f'[providers.bench]\nkind = "custom"\nbase_url = "{mock.base}/v1"\napi_key = "sk-bench"\n')
    env = {"SUBRELAY_CONFIG": str(config), "CODEX_AUTH_PATH": str(workdir / "none.json"), "SUBRELAY_LOG_LEVEL": "warning",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="subrelay-bench-metrics-")}
    server = start(f"subrelay-w{workers}", [sys.executable, "-m", "proxy", "serve", "--port", "{port}", "--workers",
                                           str(workers)], workdir, env)
    time.sleep(2.0 if workers > 1 else 0.5)  # every worker up, not just the first
    return server


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="subrelay with 1 and 2 workers, on loopback")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    runs, requests = (2, 3000) if args.quick else (4, 8000)
    workdir = Path(tempfile.mkdtemp(prefix="subrelay-bench-workers-"))
    mock = start_mock(workdir)
    servers = {n: start_subrelay(workdir, mock, n) for n in (1, 2)}
    results: dict = {"nonstream_c50": {1: [], 2: []}, "stream50_c50": {1: [], 2: []}}
    try:
        for n, server in servers.items():  # warm-up
            drive(f"{server.base}/v1/chat/completions", {"model": "bench/bench-d1", "messages": MESSAGES}, 10, 200)
        for round_ in range(runs):
            for n in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                url = f"{servers[n].base}/v1/chat/completions"
                small = drive(url, {"model": "bench/bench-d1", "messages": MESSAGES}, 50, requests)
                stream = drive(url, {"model": "bench/bench-d50", "messages": MESSAGES, "stream": True}, 50, requests // 2)
                for key, outcome in (("nonstream_c50", small), ("stream50_c50", stream)):
                    assert outcome["errors"] == 0, outcome["error_kinds"]
                    results[key][n].append(len(outcome["latencies_ms"]) / outcome["wall_s"])
    finally:
        for server in servers.values():
            server.stop()
        mock.stop()
    summary = {key: {f"workers_{n}": statistics.median(values) for n, values in by_n.items()} for key, by_n in results.items()}
    print(f"{'scenario':16s} {'1 worker':>10s} {'2 workers':>10s} {'ratio':>6s}")
    for key, row in summary.items():
        print(f"{key:16s} {row['workers_1']:10.0f} {row['workers_2']:10.0f} {row['workers_2'] / row['workers_1']:6.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers-latest.json").write_text(json.dumps({"runs": runs, "requests": requests, "req_per_s": summary}, indent=2))
    return summary


if __name__ == "__main__":
    main()
