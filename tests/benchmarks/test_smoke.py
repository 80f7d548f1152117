"""The benchmark harness cannot rot: a tiny run must produce well-formed figures (no timing asserts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_smoke_run_writes_well_formed_figures(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--no-litellm", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "latest-smoke.json").read_text())
    assert "nonstream_c1" in result.stdout and "subrelay" in result.stdout
    for scenario in ("nonstream_c1", "stream200_c1", "codex_stream200_c1", "nonstream_c10", "stream50_c10"):
        for target in ("direct", "subrelay"):
            row = data["scenarios"][scenario][target]
            assert row["errors"] == 0 and row["requests"] > 0, (scenario, target, row)
            assert all(math.isfinite(row[key]) and row[key] > 0 for key in ("p50_ms", "p99_ms", "ttfb_p50_ms", "req_per_s"))
    figures = data["figures"]["subrelay"]
    for key in ("added_p50_ms_c1", "stream_ttfb_overhead_p50_ms", "nonstream_req_per_s_saturation",
                "cpu_s_per_1k_nonstream", "rss_start_mb", "rss_after_100_mb", "rss_per_open_stream_kb"):
        assert isinstance(figures[key], (int, float)) and math.isfinite(figures[key]), key
    assert 0 < data["figures"]["ratios"]["subrelay_over_direct_throughput"]
    assert data["machine"]["cpus"] >= 1


def test_the_load_driver_only_targets_loopback():
    result = subprocess.run([sys.executable, "-m", "benchmarks.load", "--url", "http://10.0.0.1:80/x", "--body", "{}",
                             "-n", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "loopback" in result.stderr


def test_the_peer_harness_measures_every_scenario_with_complete_answers(tmp_path):
    """``benchmarks.peers`` with the peers left out (installing them stays out of CI): every scenario
    is probed for a complete answer (each distinct delta and the terminal event) before it is measured."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--smoke", "--no-litellm", "--no-codex-lb",
                             "--no-portkey", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "peers-latest-smoke.json").read_text())
    assert len(data["scenarios"]) == 8
    for scenario, rows in data["scenarios"].items():
        for target in ("direct", "subrelay"):
            assert "n/a" not in rows[target], (scenario, target, rows[target])
            assert rows[target]["errors"] == 0 and rows[target]["requests"] > 0, (scenario, target)
    assert "responses_stream50_c10" in result.stdout


def test_quick_and_smoke_runs_never_rewrite_the_published_results():
    """Only a full run updates the tracked benchmarks/results/; a quick check on one machine goes to
    results/local/, which git ignores (``git status`` stays clean after ``benchmarks.run --quick``)."""
    from benchmarks.run import HERE, out_dir

    assert out_dir(None, "full") == HERE / "results"
    for mode in ("quick", "smoke"):
        local = out_dir(None, mode)
        assert local == HERE / "results" / "local"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(local / f"latest-{mode}.json")], cwd=ROOT)
        assert ignored.returncode == 0
    assert out_dir("/tmp/x", "quick") == Path("/tmp/x")


def test_the_codex_socket_loop_measures_every_door_over_both_transports(tmp_path):
    """``benchmarks.codex_socket_loop`` in miniature: every door's loop goes over the socket with every turn
    after the first incremental, over HTTP in full, and the figures are well formed (bytes are exact)."""
    out = tmp_path / "loop.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.codex_socket_loop", "--round-trips", "3", "--loops", "1",
                             "--tool-bytes", "2048", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data) == {"chat", "responses_http", "responses_ws", "messages"}
    for door, rows in data.items():
        socket, http = rows["websocket"], rows["http"]
        assert socket["transports"] == ["ws"] and http["transports"] == ["http"], door
        assert socket["turns_per_loop"] == http["turns_per_loop"] == 4, door
        assert socket["incremental_turns"] == 3 and http["incremental_turns"] == 0, door
        assert socket["bytes_per_loop"] < http["bytes_per_loop"], door
        assert all(math.isfinite(row[key]) for row in (socket, http) for key in ("cpu_ms_per_turn", "wall_ms_per_turn_p50"))
    assert "| chat | websocket |" in result.stdout
