"""subrelay's overhead, throughput and memory, side by side with a direct call and LiteLLM.

Everything runs on 127.0.0.1: a fast mock upstream (``benchmarks/mock.py``), subrelay (one worker),
LiteLLM's proxy (one worker, installed by this script into ``benchmarks/.venv-litellm``), and the
load driver (``benchmarks/load.py``) in its own process. Runs of the targets are interleaved
(A B C A B C …) so machine drift cancels, and medians over runs are reported.

    .venv/bin/python -m benchmarks.run            # full run (several minutes)
    .venv/bin/python -m benchmarks.run --quick    # under 2 minutes
    .venv/bin/python -m benchmarks.run --no-litellm

Figures are printed and written to ``benchmarks/results/<time>.json`` and ``results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LITELLM_VENV = HERE / ".venv-litellm"
LITELLM_VERSION = "1.106.2"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MESSAGES = [{"role": "user", "content": "Say hello."}]


# -- processes -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (LiteLLM and uvicorn may fork)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        total = 0
        for pid in _tree(self.process.pid):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError):
                continue
        return total / CLK_TCK

    def rss_mb(self) -> float:
        total = 0
        for pid in _tree(self.process.pid):
            try:
                with open(f"/proc/{pid}/statm") as handle:
                    total += int(handle.read().split()[1]) * PAGE
            except (OSError, IndexError):
                continue
        return total / 2**20

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {timeout} s: see {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in argv]
    log = workdir / f"{name}.log"
    process = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT,
                               env={**os.environ, **(env or {})})
    server = Server(name, process, port, log)
    server.wait_ready()
    return server


def start_mock(workdir: Path, *extra: str) -> Server:
    return start("mock" + ("-slow" if extra else ""), [sys.executable, "-m", "benchmarks.mock", "--port", "{port}", *extra], workdir)


def start_subrelay(workdir: Path, mock: Server, slow: Server) -> Server:
    config = workdir / "subrelay.toml"
    config.write_text(
        f'[providers.bench]\nkind = "custom"\nbase_url = "{mock.base}/v1"\napi_key = "sk-bench"\n\n'
        f'[providers.slow]\nkind = "custom"\nbase_url = "{slow.base}/v1"\napi_key = "sk-bench"\n\n'
        f'[providers.claude]\nkind = "anthropic"\nbase_url = "{mock.base}"\napi_key = "sk-ant-api03-{"Bq7Zr4Xw9Lm2Np6Vt1Hs3Kd8" * 2}"\n')
    auth = workdir / "codex-auth.json"
    auth.write_text(json.dumps({"tokens": {"access_token": _jwt(), "refresh_token": "rt_bench", "account_id": "acc-bench"},
                                "last_refresh": "2026-11-20T10:00:00Z"}))
    env = {"SUBRELAY_CONFIG": str(config), "CODEX_AUTH_PATH": str(auth), "SUBRELAY_LOG_LEVEL": "warning",
           "SUBRELAY_CODEX_BASE_URL": f"{mock.base}/backend-api/codex"}
    return start("subrelay", [sys.executable, "-m", "proxy", "serve", "--port", "{port}"], workdir, env)


def ensure_litellm() -> Path:
    """Install LiteLLM's proxy into its own git-ignored venv the first time (PyPI only)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return binary


def start_litellm(workdir: Path, mock: Server, slow: Server, models: list[str],
                  codex_models: tuple[str, ...] = ("bench-d200",)) -> Server:
    entries = [{"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": f"{mock.base}/v1", "api_key": "sk-bench"}}
               for m in models]
    entries.append({"model_name": "slow-d100", "litellm_params": {"model": "openai/slow-d100", "api_base": f"{slow.base}/v1",
                                                                   "api_key": "sk-bench"}})
    entries += [{"model_name": f"codex-{m}", "litellm_params": {"model": f"chatgpt/{m}", "api_base": f"{mock.base}/backend-api/codex"}}
                for m in codex_models]
    config = workdir / "litellm.json"  # YAML is a superset of JSON
    config.write_text(json.dumps({"model_list": entries, "litellm_settings": {"drop_params": True, "telemetry": False}}))
    token_dir = workdir / "chatgpt"
    token_dir.mkdir(exist_ok=True)
    (token_dir / "auth.json").write_text(json.dumps({"access_token": _jwt(), "refresh_token": "rt_bench",
                                                     "expires_at": int(time.time()) + 86400, "account_id": "acc-bench"}))
    env = {"LITELLM_LOG": "ERROR", "CHATGPT_TOKEN_DIR": str(token_dir), "LITELLM_TELEMETRY": "False",
           # litellm_params.api_base is not honoured on the chatgpt/ streaming path; the env var is
           "CHATGPT_API_BASE": f"{mock.base}/backend-api/codex", "OPENAI_CHATGPT_API_BASE": f"{mock.base}/backend-api/codex",
           "DISABLE_SCHEMA_UPDATE": "true", "NO_DOCS": "true",
           # no client auth on either proxy, so neither pays for it
           "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    return start("litellm", [str(ensure_litellm()), "--config", str(config), "--host", "127.0.0.1", "--port", "{port}",
                             "--num_workers", "1"], workdir, env)


def _jwt() -> str:
    import base64

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64({'exp': int(time.time()) + 86400, 'https://api.openai.com/auth': {'chatgpt_account_id': 'acc-bench'}})}.c2ln"


# -- driving ---------------------------------------------------------------------------------------

def drive(url: str, body: dict, concurrency: int, requests: int, seconds: float = 60.0,
          headers: dict[str, str] | None = None) -> dict:
    raw = orjson.dumps(body).decode()
    extra = [part for name, value in (headers or {}).items() for part in ("-H", f"{name}: {value}")]
    output = subprocess.run([sys.executable, "-m", "benchmarks.load", "--url", url, "--body", raw, "-c", str(concurrency),
                             "-n", str(requests), "--seconds", str(seconds), "-H", "Authorization: Bearer sk-bench", *extra],
                            capture_output=True, cwd=ROOT, timeout=seconds + 120)
    if output.returncode != 0:
        raise RuntimeError(f"load driver failed: {output.stderr.decode()[-800:]}")
    return orjson.loads(output.stdout)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Target:
    name: str
    server: Server | None  # None: the mock itself (the floor)
    url: str
    model: dict[str, str] = field(default_factory=dict)  # scenario model → this target's model name


def summarise(runs: list[dict]) -> dict:
    """Medians over runs of each run's percentiles."""
    def med(key: str, q: float) -> float:
        return statistics.median(pct(run[key], q) for run in runs)

    ok = sum(len(run["latencies_ms"]) for run in runs)
    wall = sum(run["wall_s"] for run in runs)
    return {"p50_ms": med("latencies_ms", 0.5), "p99_ms": med("latencies_ms", 0.99),
            "ttfb_p50_ms": med("ttfb_ms", 0.5), "ttfb_p99_ms": med("ttfb_ms", 0.99),
            "requests": ok, "errors": sum(run["errors"] for run in runs),
            "statuses": _merged(run["statuses"] for run in runs), "error_kinds": _merged(run["error_kinds"] for run in runs),
            "req_per_s": statistics.median(len(run["latencies_ms"]) / run["wall_s"] for run in runs) if wall else 0.0}


def _merged(counts) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[str(key)] = merged.get(str(key), 0) + value
    return merged


def interleaved(targets: list[Target], scenario: str, body: dict, runs: int, concurrency: int, requests: int,
                seconds: float = 60.0) -> dict[str, dict]:
    collected: dict[str, list[dict]] = {t.name: [] for t in targets}
    cpu: dict[str, float] = {t.name: 0.0 for t in targets}
    for round_ in range(runs):
        order = targets[round_ % len(targets):] + targets[:round_ % len(targets)]
        for target in order:
            before = target.server.cpu_seconds() if target.server else 0.0
            result = drive(target.url, {**body, "model": target.model[scenario]}, concurrency, requests, seconds)
            if target.server:
                cpu[target.name] += target.server.cpu_seconds() - before
            collected[target.name].append(result)
    summary = {}
    for name, results in collected.items():
        summary[name] = summarise(results)
        if cpu[name] and summary[name]["requests"]:
            summary[name]["cpu_s_per_1k"] = cpu[name] / summary[name]["requests"] * 1000
    return summary


def peak_rss_during(server: Server, action) -> tuple[float, object]:
    peak = [server.rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = action()
    finally:
        done.set()
        sampler.join()
    return peak[0], outcome


# -- the benchmark ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="subrelay vs direct vs LiteLLM, on loopback")
    parser.add_argument("--quick", action="store_true", help="a run under 2 minutes")
    parser.add_argument("--smoke", action="store_true", help="a few requests only (used by the test suite)")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--out", help="directory for the results (default: results/ for a full run, "
                                      "results/local/ (not tracked) for --quick and --smoke)")
    parser.add_argument("--markdown", metavar="RESULTS", help="print a saved run as the README's tables")
    args = parser.parse_args(argv)
    if args.markdown:
        saved = orjson.loads(Path(args.markdown).read_bytes())
        print(markdown(saved))
        return saved
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = {
        "smoke": dict(runs=1, c1=20, stream=10, sweep_runs=1, sweep_n=400, sweep_s=3, levels=(1, 10), stream_levels=(1, 10), memory=100,
                      open_streams=20),
        "quick": dict(runs=2, c1=300, stream=30, sweep_runs=1, sweep_n=1500, sweep_s=2, levels=(1, 10, 50, 200),
                      stream_levels=(1, 10, 50), memory=600, open_streams=100),
        "full": dict(runs=5, c1=1000, stream=300, sweep_runs=3, sweep_n=10000, sweep_s=6, levels=(1, 10, 50, 200),
                     stream_levels=(1, 10, 50, 200), memory=10000, open_streams=200),
    }[size]
    runs = args.runs or plan["runs"]
    workdir = Path(tempfile.mkdtemp(prefix="subrelay-bench-"))
    servers: list[Server] = []
    results: dict = {"mode": size, "machine": machine(), "scenarios": {}}
    try:
        mock = start_mock(workdir)
        slow = start_mock(workdir, "--delay", "0.01")
        servers += [mock, slow]
        subrelay = start_subrelay(workdir, mock, slow)
        servers.append(subrelay)
        results["rss_start_mb"] = {"subrelay": subrelay.rss_mb()}
        models = ["bench-d1", "bench-d50", "bench-d200"]
        targets = [
            Target("direct", None, f"{mock.base}/v1/chat/completions",
                   {"small": "bench-d1", "stream": "bench-d200", "stream50": "bench-d50", "slow": "slow-d100"}),
            Target("subrelay", subrelay, f"{subrelay.base}/v1/chat/completions",
                   {"small": "bench/bench-d1", "stream": "bench/bench-d200", "stream50": "bench/bench-d50",
                    "codex": "codex/bench-d200", "slow": "slow/slow-d100"}),
        ]
        if not args.no_litellm:
            litellm = start_litellm(workdir, mock, slow, models)
            servers.append(litellm)
            results["rss_start_mb"]["litellm"] = litellm.rss_mb()
            targets.append(Target("litellm", litellm, f"{litellm.base}/v1/chat/completions",
                                  {"small": "bench-d1", "stream": "bench-d200", "stream50": "bench-d50",
                                   "codex": "codex-bench-d200", "slow": "slow-d100"}))
        proxies = [t for t in targets if t.server is not None]
        for target in targets:  # warm-up: connections, imports, caches
            drive(target.url, {"model": target.model["small"], "messages": MESSAGES}, 2, 20)
            if target.server:
                drive(target.url, {"model": target.model["codex"], "messages": MESSAGES, "stream": True}, 1, 5)

        print("[memory] RSS with many open streams", flush=True)
        streams_memory = {t.name: open_stream_memory(t, plan) for t in proxies}
        scenarios = results["scenarios"]
        print(f"[{size}] non-stream small completion, concurrency 1", flush=True)
        scenarios["nonstream_c1"] = interleaved(targets, "small", {"messages": MESSAGES, "max_tokens": 16}, runs, 1, plan["c1"])
        print("[stream] 200 deltas, concurrency 1", flush=True)
        scenarios["stream200_c1"] = interleaved(targets, "stream", {"messages": MESSAGES, "stream": True}, runs, 1, plan["stream"])
        print("[codex] Responses → Chat Completions translation, 200 deltas, concurrency 1", flush=True)
        codex_direct = Target("direct", None, f"{mock.base}/backend-api/codex/responses", {"codex": "bench-d200"})
        scenarios["codex_stream200_c1"] = interleaved([codex_direct, *proxies], "codex",
                                                      {"messages": MESSAGES, "stream": True}, runs, 1, plan["stream"])
        print("[responses] /v1/responses: Codex pass-through and a translated key provider, 200 deltas", flush=True)
        # (LiteLLM is not run here: these scenarios measure subrelay's two Responses paths against the floor.)
        both = {"messages": MESSAGES, "input": "Say hello.", "stream": True}  # each target reads its own field
        scenarios["responses_codex_stream200_c1"] = interleaved(
            [codex_direct, Target("subrelay", subrelay, f"{subrelay.base}/v1/responses", {"codex": "codex/bench-d200"})],
            "codex", both, runs, 1, plan["stream"])
        scenarios["responses_translated_stream200_c1"] = interleaved(
            [Target("direct", None, f"{mock.base}/v1/chat/completions", {"stream": "bench-d200"}),
             Target("subrelay", subrelay, f"{subrelay.base}/v1/responses", {"stream": "bench/bench-d200"})],
            "stream", both, runs, 1, plan["stream"])
        scenarios["responses_codex_stream50_c10"] = interleaved(
            [Target("direct", None, codex_direct.url, {"codex": "bench-d50"}), Target("subrelay", subrelay, f"{subrelay.base}/v1/responses", {"codex": "codex/bench-d50"})],
            "codex", {**both}, min(runs, plan["sweep_runs"]), 10, plan["sweep_n"], plan["sweep_s"])
        print("[messages] /v1/messages: Codex translated and Anthropic pass-through, 200 deltas", flush=True)
        anthropic_direct = Target("direct", None, f"{mock.base}/v1/messages", {"m": "bench-d200"})
        claude_body = {"max_tokens": 4096, "messages": MESSAGES, "stream": True}
        scenarios["messages_codex_stream200_c1"] = interleaved(
            [codex_direct, Target("subrelay", subrelay, f"{subrelay.base}/v1/messages", {"codex": "codex/bench-d200"})],
            "codex", {**claude_body, "input": "Say hello."}, runs, 1, plan["stream"])
        scenarios["messages_passthrough_stream200_c1"] = interleaved(
            [anthropic_direct, Target("subrelay", subrelay, f"{subrelay.base}/v1/messages", {"m": "claude/bench-d200"})],
            "m", claude_body, runs, 1, plan["stream"])
        for level in plan["levels"]:
            print(f"[sweep] concurrency {level}", flush=True)
            scenarios[f"nonstream_c{level}"] = interleaved(targets, "small", {"messages": MESSAGES},
                                                           min(runs, plan["sweep_runs"]), level, plan["sweep_n"], plan["sweep_s"])
            if level not in plan["stream_levels"]:
                continue
            scenarios[f"stream50_c{level}"] = interleaved(targets, "stream50", {"messages": MESSAGES, "stream": True},
                                                          min(runs, plan["sweep_runs"]), level, plan["sweep_n"], plan["sweep_s"])
        print("[memory] RSS after many requests", flush=True)
        results["memory"] = {t.name: {**memory(t, plan), **streams_memory[t.name]} for t in proxies}
    finally:
        for server in reversed(servers):
            server.stop()
    results["figures"] = figures(results)
    write(results, out_dir(args.out, size))
    print(report(results))
    return results


def open_stream_memory(target: Target, plan: dict) -> dict:
    """RSS growth while ``open_streams`` slow streams are open, measured right after warm-up:
    later bulk traffic grows the heap and would hide the per-stream cost."""
    server = target.server
    streams = plan["open_streams"]
    before = server.rss_mb()
    peak, _ = peak_rss_during(server, lambda: drive(target.url, {"model": target.model["slow"], "messages": MESSAGES,
                                                                 "stream": True}, streams, streams))
    return {"open_streams": streams, "rss_before_streams_mb": before, "rss_peak_streams_mb": peak,
            "rss_per_open_stream_kb": max(0.0, peak - before) * 1024 / streams}


def memory(target: Target, plan: dict) -> dict:
    """RSS after half and all of ``plan['memory']`` non-stream requests: flat means no leak."""
    server = target.server
    half = plan["memory"] // 2
    drive(target.url, {"model": target.model["small"], "messages": MESSAGES}, 10, half)
    at_half = server.rss_mb()
    drive(target.url, {"model": target.model["small"], "messages": MESSAGES}, 10, half)
    at_full = server.rss_mb()
    return {f"rss_after_{half}_mb": at_half, f"rss_after_{plan['memory']}_mb": at_full,
            "rss_growth_pct": (at_full - at_half) / at_half * 100}


def figures(results: dict) -> dict:
    s = results["scenarios"]
    out: dict = {}
    for proxy in ("subrelay", "litellm"):
        if proxy not in s["nonstream_c1"]:
            continue
        saturation = max((s[k][proxy]["req_per_s"], k) for k in s if k.startswith("nonstream_c"))
        stream_sat = max((s[k][proxy]["req_per_s"], k) for k in s if k.startswith("stream50_c"))
        sweep = s.get("nonstream_c50", s["nonstream_c1"])
        out[proxy] = {
            "added_p50_ms_c1": s["nonstream_c1"][proxy]["p50_ms"] - s["nonstream_c1"]["direct"]["p50_ms"],
            "added_p99_ms_c1": s["nonstream_c1"][proxy]["p99_ms"] - s["nonstream_c1"]["direct"]["p99_ms"],
            "stream_ttfb_overhead_p50_ms": s["stream200_c1"][proxy]["ttfb_p50_ms"] - s["stream200_c1"]["direct"]["ttfb_p50_ms"],
            "stream200_added_p50_ms": s["stream200_c1"][proxy]["p50_ms"] - s["stream200_c1"]["direct"]["p50_ms"],
            "codex_stream200_p50_ms": s["codex_stream200_c1"][proxy]["p50_ms"],
            "codex_stream200_ttfb_p50_ms": s["codex_stream200_c1"][proxy]["ttfb_p50_ms"],
            "nonstream_req_per_s_saturation": saturation[0], "nonstream_saturation_at": saturation[1],
            "stream50_per_s_saturation": stream_sat[0], "stream50_saturation_at": stream_sat[1],
            "cpu_s_per_1k_nonstream": sweep[proxy].get("cpu_s_per_1k"),
            "rss_start_mb": results["rss_start_mb"].get(proxy),
            **{k: v for k, v in results.get("memory", {}).get(proxy, {}).items()},
        }
    direct_sat = max(s[k]["direct"]["req_per_s"] for k in s if k.startswith("nonstream_c"))
    direct_stream_sat = max(s[k]["direct"]["req_per_s"] for k in s if k.startswith("stream50_c"))
    out["direct"] = {"nonstream_req_per_s_saturation": direct_sat, "stream50_per_s_saturation": direct_stream_sat,
                     "p50_ms_c1": s["nonstream_c1"]["direct"]["p50_ms"]}
    if "subrelay" in out:
        sub = out["subrelay"]
        ratios = {"subrelay_over_direct_throughput": sub["nonstream_req_per_s_saturation"] / direct_sat,
                  "subrelay_over_direct_stream_throughput": sub["stream50_per_s_saturation"] / direct_stream_sat}
        if "litellm" in out:
            lit = out["litellm"]
            ratios.update({
                "subrelay_over_litellm_throughput": sub["nonstream_req_per_s_saturation"] / lit["nonstream_req_per_s_saturation"],
                "subrelay_over_litellm_stream_throughput": sub["stream50_per_s_saturation"] / lit["stream50_per_s_saturation"],
                "litellm_over_subrelay_added_p50": lit["added_p50_ms_c1"] / sub["added_p50_ms_c1"] if sub["added_p50_ms_c1"] > 0 else None,
                "subrelay_over_litellm_rss_start": (sub["rss_start_mb"] or 0) / (lit["rss_start_mb"] or 1),
            })
        out["ratios"] = ratios
    return out


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kernel": platform.release(),
            "litellm": LITELLM_VERSION, "workers": 1, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def out_dir(out: str | None, mode: str) -> Path:
    """Where a run's files go: only a full run updates the tracked ``results/``; a quick or smoke run
    (a check on one machine) goes to the untracked ``results/local/``, so it never rewrites the
    published figures (``results/latest-quick.json`` and the like)."""
    if out:
        return Path(out)
    return HERE / "results" if mode == "full" else HERE / "results" / "local"


def write(results: dict, out: Path, prefix: str = "") -> None:
    """``<prefix><mode>-<time>.json`` and ``<prefix>latest-<mode>.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    payload = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    (out / f"{prefix}{results['mode']}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_bytes(payload)
    (out / f"{prefix}latest-{results['mode']}.json").write_bytes(payload)


def report(results: dict) -> str:
    s = results["scenarios"]
    lines = [f"machine: {results['machine']['cpus']} CPU ({results['machine']['cpu']}), Python {results['machine']['python']}, "
             f"one worker per proxy, mode {results['mode']}", "",
             f"{'scenario':34s} {'target':9s} {'p50 ms':>8s} {'p99 ms':>8s} {'ttfb50':>8s} {'req/s':>9s} {'cpu s/1k':>9s} {'err':>4s}"]
    for scenario, by_target in s.items():
        for target, row in by_target.items():
            cpu = row.get("cpu_s_per_1k")
            lines.append(f"{scenario:34s} {target:9s} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['ttfb_p50_ms']:8.2f} "
                         f"{row['req_per_s']:9.1f} {'' if cpu is None else f'{cpu:9.2f}':>9s} {row['errors']:4d}")
    lines.append("")
    lines.append(json.dumps(results["figures"], indent=2))
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """The README's two tables for a saved run: every scenario and target, then the headline figures."""
    m = results["machine"]
    lines = [f"{m['time']}, {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, kernel {m['kernel']}, one worker per "
             f"proxy, LiteLLM {m['litellm']}, mode {results['mode']}.", "",
             "| scenario | target | p50 ms | p99 ms | TTFB p50 ms | req/s | CPU s / 1k req |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scenario, rows in results["scenarios"].items():
        for target, row in rows.items():
            cpu = row.get("cpu_s_per_1k")
            lines.append(f"| {scenario} | {target} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['ttfb_p50_ms']:.2f} | "
                         f"{row['req_per_s']:.0f} | {'' if cpu is None else f'{cpu:.2f}'} |")
    f = results["figures"]
    sub, lit = f.get("subrelay", {}), f.get("litellm", {})

    def pair(key: str, fmt: str = "{:.2f}") -> tuple[str, str]:
        return (fmt.format(sub[key]) if key in sub else "", fmt.format(lit[key]) if key in lit else "")

    lines += ["", "| figure | subrelay | LiteLLM |", "|---|---:|---:|"]
    for label, key, fmt in (("added latency p50 at c=1 (non-stream), ms", "added_p50_ms_c1", "{:.2f}"),
                            ("added latency p99 at c=1, ms", "added_p99_ms_c1", "{:.2f}"),
                            ("non-stream req/s at saturation", "nonstream_req_per_s_saturation", "{:.0f}"),
                            ("50-delta streams/s at saturation", "stream50_per_s_saturation", "{:.1f}"),
                            ("streaming TTFB overhead p50 (200 deltas), ms", "stream_ttfb_overhead_p50_ms", "{:.2f}"),
                            ("200-delta stream, added p50, ms", "stream200_added_p50_ms", "{:.2f}"),
                            ("Codex translation, 200-delta stream p50, ms", "codex_stream200_p50_ms", "{:.2f}"),
                            ("CPU seconds per 1k non-stream requests (c=50)", "cpu_s_per_1k_nonstream", "{:.2f}"),
                            ("RSS at start, MB", "rss_start_mb", "{:.1f}"),
                            ("RSS growth over the memory run, %", "rss_growth_pct", "{:+.1f}"),
                            ("RSS per open stream, KB", "rss_per_open_stream_kb", "{:.0f}")):
        a, b = pair(key, fmt)
        lines.append(f"| {label} | {a} | {b} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
