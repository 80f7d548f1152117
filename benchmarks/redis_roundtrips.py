"""What Redis costs one replica: round trips per request and throughput with Redis against without.

    .venv/bin/python -m benchmarks.redis_roundtrips [--requests 1000] [--concurrency 10]

Four setups of one ``subrelay serve`` replica in front of ``benchmarks/mock.py`` (a Codex answer of 20
deltas, aggregated to a Chat Completion): the owner's login without Redis (``local``) and with
``SUBRELAY_REDIS_URL`` (``redis``); team mode with one user (rpm limit set) on the SQLite store
(``team-sqlite``) and on Redis (``team-redis``). Per Redis setup it runs the requests twice: once with
``MONITOR`` attached, counting the commands each request sends (a command a script runs inside Redis is
not a round trip; a MULTI…EXEC batch is one), and once without it for throughput. ``INFO commandstats``
(before/after) gives the per-command breakdown, script-internal commands included. Needs
``redis-server`` on the PATH; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import redis

from benchmarks.run import ROOT, _jwt, start, start_mock
from tests.redis_server import RedisServer

BODY = {"model": "codex/bench-d20", "messages": [{"role": "user", "content": "Say hello."}]}


def drive(url: str, key: str | None, concurrency: int, requests: int) -> dict:
    headers = ["-H", f"Authorization: Bearer {key}"] if key else []
    output = subprocess.run([sys.executable, "-m", "benchmarks.load", "--url", url, "--body", json.dumps(BODY),
                             "-c", str(concurrency), "-n", str(requests), "--seconds", "300", *headers],
                            capture_output=True, cwd=ROOT, timeout=420)
    if output.returncode != 0:
        raise RuntimeError(output.stderr.decode()[-800:])
    result = orjson.loads(output.stdout)
    ok = int(result["statuses"].get("200", 0))
    return {"ok": ok, "statuses": result["statuses"], "rps": round(ok / result["wall_s"], 1)}


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


class Monitor:
    """Counts the commands clients send (not the ones scripts run inside Redis); MULTI…EXEC counts once."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.round_trips = 0
        self.by_command: dict[str, int] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        in_multi: set[str] = set()
        with self.client.monitor() as monitor:
            for event in monitor.listen():
                if self._stop:
                    return
                if event.get("client_type") == "lua":
                    continue
                command = (event.get("command") or "").split(" ", 1)[0].lower()
                if command in ("info", "monitor", "client", "hello"):
                    continue
                self.by_command[command] = self.by_command.get(command, 0) + 1
                who = event.get("client_address", "") + ":" + str(event.get("client_port", ""))
                if command == "multi":
                    in_multi.add(who)
                    self.round_trips += 1
                elif command == "exec":
                    in_multi.discard(who)
                elif who not in in_multi:
                    self.round_trips += 1

    def __enter__(self) -> "Monitor":
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # the last requests' commands reach the monitor
        self._stop = True
        self.client.ping()  # wakes the listener so it sees the stop flag
        self._thread.join(timeout=5)


def start_replica(workdir: Path, mock, env: dict[str, str], name: str):
    auth = workdir / "codex-auth.json"
    auth.write_text(json.dumps({"tokens": {"access_token": _jwt(), "refresh_token": "rt_bench",
                                           "account_id": "acc-bench"}, "last_refresh": "2026-11-20T10:00:00Z"}))
    base = {"CODEX_AUTH_PATH": str(auth), "SUBRELAY_LOG_LEVEL": "warning",
            "SUBRELAY_CODEX_BASE_URL": f"{mock.base}/backend-api/codex", "SUBRELAY_AUTH_BASE_URL": mock.base}
    return start(name, [sys.executable, "-m", "proxy", "serve", "--port", "{port}"], workdir, {**base, **env})


def add_user(env: dict[str, str]) -> str:
    """A team user with a login of their own and an rpm limit (so every request reserves)."""
    run = subprocess.run([sys.executable, "-m", "proxy", "users", "add", "bench", "--rpm", "1000000", "--json"],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    key = json.loads(run.stdout)["key"]

    async def seal() -> None:
        from proxy.team.context import open_team
        from proxy.team.logins import seal_login

        team = open_team({**os.environ, **env})
        auth = {"tokens": {"access_token": _jwt(), "refresh_token": "rt_bench", "account_id": "acc-bench"}}
        assert await team.store.put_login("bench", seal_login(team, "bench", auth, 1), expected_version=None)
        await team.store.close()

    asyncio.run(seal())
    return key


def measure(name: str, workdir: Path, mock, env: dict[str, str], team: bool, server: RedisServer | None,
            requests: int, concurrency: int) -> dict:
    from proxy.team.secretbox import new_secret

    env = {**env, "SUBRELAY_STATE_DIR": str(workdir / f"state-{name}"), "SUBRELAY_SECRET_KEY": new_secret()}
    if server is not None:
        env["SUBRELAY_REDIS_URL"] = server.url
        redis.Redis.from_url(server.url).flushall()
    key = add_user(env) if team else None
    replica = start_replica(workdir, mock, env, name)
    url = f"{replica.base}/v1/chat/completions"
    try:
        drive(url, key, concurrency, 200)  # warm-up
        figures: dict = {"setup": name}
        if server is not None:
            client = redis.Redis.from_url(server.url)
            before = commandstats(client)
            with Monitor(server.url) as monitor:
                counted = drive(url, key, concurrency, requests)
            after = commandstats(client)
            per = max(counted["ok"], 1)
            figures["round_trips_per_request"] = round(monitor.round_trips / per, 3)
            figures["client_commands_per_request"] = {c: round(n / per, 3) for c, n in sorted(monitor.by_command.items())}
            figures["commandstats_per_request"] = {c: round((after.get(c, 0) - before.get(c, 0)) / per, 3)
                                                   for c in sorted(after) if c not in ("info", "monitor")
                                                   and after.get(c, 0) != before.get(c, 0)}
        runs = [drive(url, key, concurrency, requests) for _ in range(3)]
        figures["rps_runs"] = [run["rps"] for run in runs]
        figures["rps"] = sorted(figures["rps_runs"])[1]
        figures["statuses"] = runs[-1]["statuses"]
        return figures
    finally:
        replica.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="subrelay-redis-bench-"))
    mock = start_mock(workdir)
    server = RedisServer().start()
    results = []
    try:
        for name, team, use_redis in (("local", False, False), ("redis", False, True),
                                      ("team-sqlite", True, False), ("team-redis", True, True)):
            results.append(measure(name, workdir, mock, {}, team, server if use_redis else None,
                                   args.requests, args.concurrency))
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.close()
        mock.stop()
    by = {r["setup"]: r for r in results}
    summary = {"requests": args.requests, "concurrency": args.concurrency, "results": results,
               "ratio_redis_over_local": round(by["redis"]["rps"] / by["local"]["rps"], 3),
               "ratio_team_redis_over_team_sqlite": round(by["team-redis"]["rps"] / by["team-sqlite"]["rps"], 3)}
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    out = ROOT / "benchmarks" / "results" / f"redis-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
