"""subrelay side by side with every peer a user would pick instead: LiteLLM, codex-lb and Portkey.

    .venv/bin/python -m benchmarks.peers            # full run (about 15 minutes)
    .venv/bin/python -m benchmarks.peers --quick    # about 5 minutes
    .venv/bin/python -m benchmarks.peers --no-litellm

Same mock (``benchmarks/mock.py``), same load driver (``benchmarks/load.py``) and the same
interleaving as ``benchmarks.run`` (targets take turns, the order rotating each round, medians over
rounds). Each proxy runs one process with its own defaults except where a default would make the
comparison unfair or impossible; every such change is listed in :data:`SETTINGS` and printed.

Peers are installed on first use into git-ignored folders beside this file, from the registries
only: LiteLLM from PyPI (``.venv-litellm``), codex-lb from PyPI into a Python 3.13 venv
(``.venv-codexlb``; codex-lb needs 3.13 — pass ``--python313`` if it is not found), and the Portkey
gateway from npm (``.venv-portkey``). Never in CI.

Before measuring, each target gets one probe request per scenario; a target whose probe does not
return a complete answer is marked with the reason (``n/a``) instead of measured, so a peer that
cannot do a scenario stays in the table.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from .mock import delta_texts
from .run import (HERE, MESSAGES, Server, drive, peak_rss_during, start, start_litellm, start_mock, start_subrelay,
                  out_dir, summarise, write)

CODEX_LB_VERSION = "1.24.0"
PORTKEY_VERSION = "1.15.2"
# Portkey 1.15.x streams fail with "TypeError: immutable" under a newer @hono/node-server than its own
# lockfile's; these are the versions in that lockfile (Portkey-AI/gateway, package-lock.json).
PORTKEY_OVERRIDES = {"@hono/node-server": "1.13.5", "hono": "4.9.7"}
DEAD_PROXY = "http://127.0.0.1:9"  # anything a peer tries to reach beyond loopback goes nowhere

SETTINGS = {
    "subrelay": ["one worker; log level warning (no per-request line)"],
    "litellm": ["one worker; LITELLM_LOG=ERROR; no master key; drop_params"],
    "codex-lb": ["upstream_stream_transport=http and the HTTP session bridge off (its default opens a websocket "
                 "to the backend, which the mock, like any plain HTTP upstream, does not speak)",
                 "per-account stream and response-create caps, the proxy bulkhead and the global create limit "
                 "raised from 8/4/512/256 to 10000, so one imported account can take concurrency 50 "
                 "(with its defaults, requests beyond 8 open streams wait and time out)",
                 "telemetry off; its request log (SQLite) and INFO logging left on: they are how it ships"],
    "portkey": [f"@hono/node-server {PORTKEY_OVERRIDES['@hono/node-server']} and hono {PORTKEY_OVERRIDES['hono']} "
                "pinned (its lockfile's versions; newer ones break its streams)",
                "NODE_ENV=production, --headless (no UI, no log streaming)"],
}


# -- peers -----------------------------------------------------------------------------------------

def forged_login() -> dict:
    """A ChatGPT login the mock accepts: unsigned JWTs with the claims the peers read."""
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"exp": int(time.time()) + 30 * 86400, "email": "bench@example.com",
              "https://api.openai.com/auth": {"chatgpt_account_id": "acc-bench", "chatgpt_plan_type": "pro"}}
    token = f"{b64({'alg': 'none'})}.{b64(claims)}.c2ln"
    return {"tokens": {"id_token": token, "access_token": token, "refresh_token": "rt_bench", "account_id": "acc-bench"},
            "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def find_python313(explicit: str | None) -> str:
    for candidate in (explicit, shutil.which("python3.13"), "/root/.pyenv/versions/3.13.0/bin/python",
                      *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python"))):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("codex-lb needs Python 3.13: pass --python313 PATH, or --no-codex-lb")


def ensure_codex_lb(python313: str) -> Path:
    venv = HERE / ".venv-codexlb"
    binary = venv / "bin" / "codex-lb"
    if not binary.exists():
        print(f"installing codex-lb=={CODEX_LB_VERSION} into {venv} …", flush=True)
        subprocess.run([python313, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"codex-lb=={CODEX_LB_VERSION}"], check=True)
    return binary


def start_codex_lb(workdir: Path, mock: Server, python313: str) -> Server:
    data = workdir / "codex-lb"
    data.mkdir()
    raised = "10000"
    env = {"CODEX_LB_DATA_DIR": str(data), "CODEX_LB_UPSTREAM_BASE_URL": f"{mock.base}/backend-api",
           "CODEX_LB_UPSTREAM_STREAM_TRANSPORT": "http", "CODEX_LB_HTTP_RESPONSES_SESSION_BRIDGE_ENABLED": "false",
           "CODEX_LB_HTTP_DOWNSTREAM_TRANSPORT_POLICY": "always_http", "CODEX_LB_TELEMETRY_ENABLED": "false",
           "CODEX_LB_PROXY_ACCOUNT_STREAM_LIMIT": raised, "CODEX_LB_PROXY_ACCOUNT_RESPONSE_CREATE_LIMIT": raised,
           "CODEX_LB_BULKHEAD_PROXY_LIMIT": raised, "CODEX_LB_PROXY_RESPONSE_CREATE_LIMIT": raised,
           "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost"}
    server = start("codex-lb", [str(ensure_codex_lb(python313)), "--host", "127.0.0.1", "--port", "{port}"], workdir, env)
    _wait_http(f"{server.base}/health", 60)
    # One account, imported the way its dashboard does (a local request needs no dashboard login).
    answer = httpx.post(f"{server.base}/api/accounts/import", timeout=30,
                        files={"auth_json": ("auth.json", json.dumps(forged_login()), "application/json")})
    if answer.status_code != 200 or answer.json().get("status") != "active":
        raise RuntimeError(f"codex-lb did not take the account: {answer.status_code} {answer.text[:300]}")
    return server


def ensure_portkey() -> Path:
    folder = HERE / ".venv-portkey"
    entry = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        print(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {folder} …", flush=True)
        folder.mkdir(exist_ok=True)
        (folder / "package.json").write_text(json.dumps({
            "name": "subrelay-peer-portkey", "private": True, "version": "0.0.0",
            "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION}, "overrides": PORTKEY_OVERRIDES}))
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder, check=True)
    return entry


def start_portkey(workdir: Path) -> Server:
    entry = ensure_portkey()
    env = {"NODE_ENV": "production", "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost"}
    return start("portkey", ["node", str(entry), "--port={port}", "--headless"], workdir, env)


def _wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


# -- scenarios -------------------------------------------------------------------------------------

@dataclass
class Call:
    """How one target does one scenario: where to send it, which model, which extra headers."""
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    api: str | None = None  # the wire format spoken, when not the scenario's (the floor speaks Codex's own)


@dataclass
class Scenario:
    name: str
    title: str
    api: str  # "chat" or "responses": what a complete answer looks like
    deltas: int
    stream: bool
    concurrency: int
    size_key: str  # which plan entry gives the request count


def scenarios() -> list[Scenario]:
    return [
        Scenario("chat_nonstream_c1", "Chat, non-stream, key provider, c=1", "chat", 1, False, 1, "c1"),
        Scenario("chat_nonstream_c50", "Chat, non-stream, key provider, c=50 (throughput)", "chat", 1, False, 50, "sweep"),
        Scenario("chat_stream200_c1", "Chat, 200-delta stream, key provider, c=1", "chat", 200, True, 1, "stream"),
        Scenario("chat_stream50_c50", "Chat, 50-delta stream, key provider, c=50 (throughput)", "chat", 50, True, 50, "sweep_stream"),
        Scenario("codex_stream200_c1", "Chat → Codex translation, 200-delta stream, c=1", "chat", 200, True, 1, "stream"),
        Scenario("codex_stream50_c10", "Chat → Codex translation, 50-delta stream, c=10 (throughput)", "chat", 50, True, 10, "sweep_stream"),
        Scenario("responses_stream200_c1", "/v1/responses to Codex, 200-delta stream, c=1", "responses", 200, True, 1, "stream"),
        Scenario("responses_stream50_c10", "/v1/responses to Codex, 50-delta stream, c=10 (throughput)", "responses", 50, True, 10, "sweep_stream"),
    ]


def body_for(scenario: Scenario, model: str, api: str | None = None) -> dict:
    if (api or scenario.api) == "responses":
        return {"model": model, "input": "Say hello.", "stream": scenario.stream}
    body = {"model": model, "messages": MESSAGES, "stream": scenario.stream}
    return body if scenario.stream else {**body, "max_tokens": 16}


def calls(name: str, base: str, mock: Server) -> dict[str, Call | str]:
    """Each scenario for target ``name``: a :class:`Call`, or why the target cannot do it."""
    def chat(model: str, **headers: str) -> Call:
        return Call(f"{base}/v1/chat/completions", model, headers)

    def responses(model: str, **headers: str) -> Call:
        return Call(f"{base}/v1/responses", model, headers)

    table: dict[str, dict[str, Call | str]] = {
        "direct": {"chat": Call(f"{mock.base}/v1/chat/completions", "bench-d{n}"),
                   "codex": Call(f"{mock.base}/backend-api/codex/responses", "bench-d{n}", api="responses"),
                   "responses": Call(f"{mock.base}/backend-api/codex/responses", "bench-d{n}")},
        "subrelay": {"chat": chat("bench/bench-d{n}"), "codex": chat("codex/bench-d{n}"),
                     "responses": responses("codex/bench-d{n}")},
        "litellm": {"chat": chat("bench-d{n}"), "codex": chat("codex-bench-d{n}"), "responses": responses("codex-bench-d{n}")},
        "codex-lb": {"chat": "Codex accounts only: no API-key upstream to send a Chat request to",
                     "codex": chat("bench-d{n}"), "responses": responses("bench-d{n}")},
        "portkey": {"chat": chat("bench-d{n}", **{"x-portkey-provider": "openai", "x-portkey-custom-host": f"{mock.base}/v1"}),
                    "codex": "no ChatGPT-login provider: it cannot sign a request to the Codex backend",
                    "responses": responses("bench-d{n}", **{"x-portkey-provider": "openai",
                                                              "x-portkey-custom-host": f"{mock.base}/backend-api/codex"})},
    }
    return table[name]


def family(scenario: Scenario) -> str:
    return scenario.name.split("_", 1)[0]


def resolve(entry: Call | str, scenario: Scenario) -> Call | str:
    if isinstance(entry, str):
        return entry
    return Call(entry.url, entry.model.format(n=scenario.deltas), entry.headers, entry.api)


def probe(call: Call, scenario: Scenario) -> str | None:
    """None when ``call`` returns the complete answer (every delta, the terminal event); else why not."""
    headers = {"Authorization": "Bearer sk-bench", **call.headers}
    try:
        answer = httpx.post(call.url, json=body_for(scenario, call.model, call.api), headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        return f"probe failed: {type(exc).__name__}"
    if answer.status_code != 200:
        return f"probe answered {answer.status_code}: {answer.text[:160]}"
    text = answer.text
    pieces = delta_texts(scenario.deltas, 8)
    if not scenario.stream:
        content = answer.json()["choices"][0]["message"]["content"] if (call.api or scenario.api) == "chat" else text
        return None if "".join(pieces) in (content or "") else "probe: the answer's text is incomplete"
    terminal = "[DONE]" if (call.api or scenario.api) == "chat" else "response.completed"
    if terminal not in text:
        return f"probe: the stream has no {terminal}: ...{text[-160:]!r}"
    arrived = sum(f'"{piece}"' in text for piece in pieces)
    if arrived < scenario.deltas:
        return f"probe: {arrived} of {scenario.deltas} deltas arrived"
    return None


# -- the run ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="subrelay vs LiteLLM, codex-lb and Portkey, on loopback")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a few requests (the test suite runs it with no peers)")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-codex-lb", action="store_true")
    parser.add_argument("--no-portkey", action="store_true")
    parser.add_argument("--python313")
    parser.add_argument("--markdown", metavar="RESULTS", help="print a saved run as the Markdown table in README.md")
    parser.add_argument("--out", help="directory for the results (default: results/ for a full run, "
                                      "results/local/ (not tracked) for --quick and --smoke)")
    args = parser.parse_args(argv)
    if args.markdown:
        saved = orjson.loads(Path(args.markdown).read_bytes())
        print(markdown(saved))
        return saved
    # Request counts per run; a run also stops starting requests after "seconds" (slow peers).
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = {"smoke": {"runs": 1, "c1": 10, "stream": 5, "sweep": 60, "sweep_stream": 20, "seconds": 3},
            "quick": {"runs": 2, "c1": 200, "stream": 30, "sweep": 1500, "sweep_stream": 400, "seconds": 8},
            "full": {"runs": 4, "c1": 600, "stream": 100, "sweep": 5000, "sweep_stream": 1500, "seconds": 20}}[mode]
    workdir = Path(tempfile.mkdtemp(prefix="subrelay-peers-"))
    servers: dict[str, Server] = {}
    results: dict = {"mode": mode, "settings": SETTINGS, "versions": {}, "scenarios": {}}
    try:
        mock = start_mock(workdir)
        slow = start_mock(workdir, "--delay", "0.01")
        servers["subrelay"] = start_subrelay(workdir, mock, slow)
        if not args.no_litellm:
            models = [f"bench-d{n}" for n in (1, 50, 200)]
            servers["litellm"] = start_litellm(workdir, mock, slow, models, codex_models=("bench-d50", "bench-d200"))
        if not args.no_codex_lb:
            servers["codex-lb"] = start_codex_lb(workdir, mock, find_python313(args.python313))
        if not args.no_portkey:
            servers["portkey"] = start_portkey(workdir)
        results["versions"] = versions(servers)
        results["rss_start_mb"] = {name: server.rss_mb() for name, server in servers.items()}
        names = ["direct", *servers]
        for scenario in scenarios():
            print(f"[{scenario.name}] {scenario.title}", flush=True)
            targets: dict[str, Call] = {}
            marked: dict[str, str] = {}
            for name in names:
                call = resolve(calls(name, servers[name].base if name in servers else "", mock)[family_key(scenario)], scenario)
                problem = call if isinstance(call, str) else probe(call, scenario)
                if problem is None:
                    targets[name] = call
                else:
                    marked[name] = problem
            for name, call in targets.items():  # warm-up: connections, imports, caches
                drive(call.url, body_for(scenario, call.model, call.api), min(scenario.concurrency, 5), 10, headers=call.headers)
            measured = measure(scenario, targets, servers, plan)
            results["scenarios"][scenario.name] = {"title": scenario.title, **measured,
                                                   **{name: {"n/a": why} for name, why in marked.items()}}
    finally:
        for server in reversed(list(servers.values())):
            server.stop()
        for server in (locals().get("slow"), locals().get("mock")):
            if server is not None:
                server.stop()
    write(results, out_dir(args.out, results["mode"]), prefix="peers-")
    print(report(results))
    return results


def family_key(scenario: Scenario) -> str:
    return {"chat": "chat", "codex": "codex", "responses": "responses"}[family(scenario)]


def measure(scenario: Scenario, targets: dict[str, Call], servers: dict[str, Server], plan: dict) -> dict[str, dict]:
    """Interleaved rounds: every target once per round, the order rotating; medians over rounds."""
    names = list(targets)
    collected: dict[str, list[dict]] = {name: [] for name in names}
    cpu = {name: 0.0 for name in names}
    peak = {name: 0.0 for name in names}
    requests = plan[scenario.size_key]
    for round_ in range(plan["runs"]):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            call = targets[name]
            server = servers.get(name)
            body = body_for(scenario, call.model, call.api)

            def run_once() -> dict:
                return drive(call.url, body, scenario.concurrency, requests, plan["seconds"], headers=call.headers)

            before = server.cpu_seconds() if server else 0.0
            if server is not None:
                rss, outcome = peak_rss_during(server, run_once)
                peak[name] = max(peak[name], rss)
                cpu[name] += server.cpu_seconds() - before
            else:
                outcome = run_once()
            collected[name].append(outcome)
    summary = {}
    for name, runs in collected.items():
        row = summarise(runs)
        if cpu[name] and row["requests"]:
            row["cpu_s_per_1k"] = cpu[name] / row["requests"] * 1000
        if peak[name]:
            row["rss_peak_mb"] = peak[name]
        summary[name] = row
    return summary


def versions(servers: dict[str, Server]) -> dict[str, str]:
    from proxy import __version__

    from .run import LITELLM_VERSION

    found = {"subrelay": __version__}
    if "litellm" in servers:
        found["litellm"] = LITELLM_VERSION
    if "codex-lb" in servers:
        found["codex-lb"] = CODEX_LB_VERSION
    if "portkey" in servers:
        found["portkey"] = PORTKEY_VERSION
    return found


def report(results: dict) -> str:
    lines = [f"versions: {results['versions']}", "", "settings changed from each proxy's defaults:"]
    for name, notes in results["settings"].items():
        if name in results["versions"]:
            lines += [f"  {name}: {note}" for note in notes]
    lines += ["", f"{'scenario':24s} {'target':9s} {'p50 ms':>8s} {'p99 ms':>8s} {'ttfb50':>8s} {'req/s':>8s} "
                  f"{'cpu s/1k':>8s} {'peak MB':>8s} {'err':>4s}"]
    for scenario, rows in results["scenarios"].items():
        for target, row in rows.items():
            if target == "title":
                continue
            if "n/a" in row:
                lines.append(f"{scenario:24s} {target:9s} n/a: {row['n/a']}")
                continue
            cpu = row.get("cpu_s_per_1k")
            peak = row.get("rss_peak_mb")
            lines.append(f"{scenario:24s} {target:9s} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['ttfb_p50_ms']:8.2f} "
                         f"{row['req_per_s']:8.1f} {'' if cpu is None else f'{cpu:8.2f}':>8s} "
                         f"{'' if peak is None else f'{peak:8.0f}':>8s} {row['errors']:4d}")
    lines.append("")
    lines.append(f"RSS at start (MB): { {k: round(v) for k, v in results['rss_start_mb'].items()} }")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """One row per scenario, one column per target: p50 / TTFB p50 ms at c=1, req/s for throughput
    scenarios, with CPU seconds per 1k requests; n/a where a target cannot do the scenario."""
    names = ["direct", "subrelay", *[n for n in ("litellm", "codex-lb", "portkey") if n in results["versions"]]]
    lines = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for rows in results["scenarios"].values():
        cells = []
        for name in names:
            row = rows.get(name)
            if row is None or "n/a" in row:
                cells.append("n/a")
                continue
            cpu = f" · {row['cpu_s_per_1k']:.1f} s" if row.get("cpu_s_per_1k") else ""
            throughput = "throughput" in rows["title"]
            main = f"{row['req_per_s']:.0f}/s" if throughput else f"{row['p50_ms']:.2f} / {row['ttfb_p50_ms']:.2f} ms"
            cells.append(main + cpu + (f" ({row['errors']} err)" if row["errors"] else ""))
        lines.append(f"| {rows['title']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| RSS | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    lines.append("| at start, MB | " + " | ".join(
        "" if n == "direct" else f"{results['rss_start_mb'].get(n, 0):.0f}" for n in names) + " |")
    peaks = {n: max((rows[n].get("rss_peak_mb", 0) for rows in results["scenarios"].values()
                     if n in rows and "n/a" not in rows[n]), default=0) for n in names}
    lines.append("| peak during the run, MB | " + " | ".join("" if n == "direct" else f"{peaks[n]:.0f}" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
