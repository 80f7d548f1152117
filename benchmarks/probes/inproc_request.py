"""One subrelay request path driven in-process, many times, to count its cost without a server or a
driver in the way. Used by ``instructions_ab.sh`` under callgrind, whose instruction counts repeat
exactly run after run, unlike CPU seconds on a shared 2-core machine.

    .venv/bin/python benchmarks/probes/inproc_request.py --root . --port 8911 --requests 2000 [--stream]

``--root`` is the checkout whose ``proxy`` package is measured (a git worktree for older commits);
the upstream is ``benchmarks/mock.py`` on ``--port`` (loopback), which must already run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream", action="store_true", help="50-delta streams instead of small non-stream answers")
    parser.add_argument("--codex", action="store_true",
                        help="Chat -> Codex translation (a ChatGPT login's provider on the mock's Codex endpoint)")
    parser.add_argument("--team", action="store_true",
                        help="team mode on: 100 users in a fresh store, requests with one user's key (with limits)")
    parser.add_argument("--body-bytes", type=int, default=0,
                        help="pad the user message so the request body is about this many bytes")
    parser.add_argument("--mark", action="store_true",
                        help="call getppid() right before and after the measured requests: under callgrind "
                             "with --dump-before=getppid the middle dump counts those requests alone (one run)")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    import tomllib

    import uvloop

    try:
        from proxy.server.app import create_app
        from proxy.config.settings import Settings
        from proxy.config.file import parse_config
    except ImportError:  # a checkout from before the packages (2026-12-01)
        from proxy.app import create_app
        from proxy.config import Settings
        from proxy.config_file import parse_config

    prices = '[prices."bench/*"]\ninput = 1.25\noutput = 10\n' if os.environ.get("TEAM_BUDGET") else ""
    config = parse_config(tomllib.loads(f'{prices}[providers.bench]\nkind = "custom"\n'
                                        f'base_url = "http://127.0.0.1:{args.port}/v1"\napi_key = "sk-bench"\n'))
    env, key = ({}, b"sk-bench")
    if args.team:
        env, key = team_store(args.requests)
    for name, value in os.environ.items():  # A/B of the ledger, and of tracing (every OTEL_* variable: the
        if value and (name == "SUBRELAY_LEDGER" or name.startswith("OTEL_")):  # endpoint, the sampler...)
            env[name] = value
    auth = "/nonexistent/auth.json"
    settings: dict = {}
    if args.codex:
        auth, settings = codex_login(args.port)
    if os.environ.get("LEDGER_NO_FLUSH"):  # the ledger's cost on the request path alone: entries are dropped
        from proxy.observe.ledger import RequestLedger

        async def drop(self) -> None:
            self._pending.clear()

        RequestLedger._flush = drop
    app = create_app(Settings(file=config, codex_auth_path=auth, env=env, **settings))
    model = ("codex" if args.codex else "bench") + ("/bench-d50" if args.stream else "/bench-d1")
    text = b"Say hello." + b" lorem ipsum" * max(0, (args.body_bytes - 120) // 12)
    body = (b'{"model":"' + model.encode() + b'","messages":[{"role":"user","content":"' + text + b'"}]'
            + (b',"stream":true}' if args.stream else b',"max_tokens":16}'))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8787"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), (b"authorization", b"Bearer " + key)],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8787)}

    async def one() -> None:
        delivered = False
        statuses: list[int] = []

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # the client stays; the request ends before this matters
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app({**scope, "state": {}}, receive, send)
        if statuses != [200]:
            raise SystemExit(f"the request failed: {statuses}")

    async def run() -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        outbox: asyncio.Queue = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
        await outbox.get()
        for _ in range(100):  # warm-up: connections, caches
            await one()
        if args.mark:
            os.getppid()
        started = time.process_time()
        for _ in range(args.requests):
            await one()
        if args.mark:
            os.getppid()
        print(f"cpu_us_per_request={(time.process_time() - started) / args.requests * 1e6:.1f}")
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan

    uvloop.install()
    asyncio.run(run())


def codex_login(port: int) -> tuple[str, dict]:
    """A ChatGPT login file (a token that never expires here) and the mock as the Codex backend."""
    import json
    import tempfile

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from benchmarks.run import _jwt

    path = os.path.join(tempfile.mkdtemp(prefix="subrelay-codex-bench-"), "auth.json")
    with open(path, "w") as file:
        json.dump({"tokens": {"access_token": _jwt(), "refresh_token": "rt_bench", "account_id": "acc-bench"},
                   "last_refresh": "2026-11-20T10:00:00Z"}, file)
    return path, {"codex_base_url": f"http://127.0.0.1:{port}/backend-api/codex"}


def team_store(requests: int) -> tuple[dict, bytes]:
    """A fresh team store with 100 users (``TEAM_USERS``); the key of one whose limits are checked (never reached)."""
    import tempfile

    from proxy.team.context import open_team
    from proxy.team.users import add_user

    # TEAM_STATE_DIR: a store filled once and reused (10,000 users take minutes to add under callgrind).
    state = os.environ.get("TEAM_STATE_DIR") or tempfile.mkdtemp(prefix="subrelay-team-bench-")
    env = {"SUBRELAY_STATE_DIR": state}
    saved = os.path.join(state, "bench-key")
    if os.path.exists(saved):
        with open(saved, "rb") as file:
            return env, file.read()

    async def fill() -> bytes:
        team = open_team(env, create=True)
        for n in range(int(os.environ.get("TEAM_USERS") or 100) - 1):  # TEAM_USERS: how cost grows with the store
            await add_user(team.store, f"user{n:05d}")
        limits = {} if os.environ.get("TEAM_NO_LIMITS") else dict(rpm=10 * requests + 1000, tpm=10**12, daily_tokens=10**12)
        if os.environ.get("TEAM_BUDGET"):  # a monthly money budget too (never reached)
            limits["budgets"] = {"month": 10**6}
        if os.environ.get("TEAM_CONCURRENT"):  # a concurrency cap (the fairness step; never reached here)
            limits["max_concurrent"] = int(os.environ["TEAM_CONCURRENT"])
        _, key = await add_user(team.store, "bench", **limits)
        await team.store.close()
        return key.encode()

    key = asyncio.run(fill())
    if os.environ.get("TEAM_STATE_DIR"):
        with open(saved, "wb") as file:
            file.write(key)
    return env, key


if __name__ == "__main__":
    main()
