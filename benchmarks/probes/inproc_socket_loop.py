"""The agent loop of ``benchmarks/codex_socket_loop.py`` (Chat door, non-stream: the whole history every
turn) driven in-process, so its cost per turn can be counted exactly (callgrind) over the Codex backend's
WebSocket and over HTTP, without a server or a client process in the way.

    python -m tests.mock_upstream --port 8970 --websocket --auth-file /tmp/auth.json &
    .venv/bin/python benchmarks/probes/inproc_socket_loop.py --root . --mock http://127.0.0.1:8970 \
        --auth /tmp/auth.json --transport websocket --loops 4

``--root`` is the checkout measured. Prints the turns driven and the CPU µs per turn; under
``valgrind --tool=callgrind`` two runs (``--loops`` N1 and N2) give instructions per turn as the difference
over the difference of turns (``instructions_ab.sh``'s method; ``SOCKET=websocket|http`` there).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--mock", required=True, help="the base URL of tests.mock_upstream --websocket")
    parser.add_argument("--auth", required=True, help="the auth.json the mock wrote")
    parser.add_argument("--transport", choices=("websocket", "http"), default="websocket")
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--tool-bytes", type=int, default=4096)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    import orjson
    import uvloop

    from proxy.config.settings import settings_from_env
    from proxy.server.app import create_app

    env = {"CODEX_AUTH_PATH": args.auth, "SUBRELAY_CODEX_BASE_URL": f"{args.mock}/backend-api/codex",
           "SUBRELAY_LOG_LEVEL": "warning", "SUBRELAY_CODEX_TRANSPORT": args.transport, "SUBRELAY_CONFIG": "",
           "HOME": "/nonexistent", "SUBRELAY_STATE_DIR": "/nonexistent/state"}
    app = create_app(settings_from_env(env))
    tools = [{"type": "function", "function": {"name": "exec_command", "parameters": {
        "type": "object", "properties": {"step": {"type": "integer"}}}}}]

    async def post(body: bytes) -> bytes:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"127.0.0.1:8787"), (b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8787), "state": {}}
        delivered = False
        status: list[int] = []
        chunks: list[bytes] = []

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"the turn failed: {status} {b''.join(chunks)[:300]!r}")
        return b"".join(chunks)

    async def agent(loop_id: str, trips: int) -> int:
        messages: list[dict] = [{"role": "system", "content": "You are a coding agent."},
                                {"role": "user", "content": f"[[calls:{trips}]] Fix the failing test ({loop_id})."}]
        for turn in range(trips + 1):
            answer = orjson.loads(await post(orjson.dumps({"model": "gpt-5.5", "messages": messages, "tools": tools})))
            message = answer["choices"][0]["message"]
            calls = message.get("tool_calls") or []
            messages.append({"role": "assistant", "content": message.get("content"),
                             **({"tool_calls": calls} if calls else {})})
            if not calls:
                return turn + 1
            step = orjson.loads(calls[0]["function"]["arguments"])["step"]
            output = (f"step {step}: " + "x" * 62 + "\n") * max(1, args.tool_bytes // 72)
            messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": output})
        raise SystemExit("the agent never finished")

    async def run() -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        outbox: asyncio.Queue = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                           inbox.get, outbox.put))
        await outbox.get()
        await agent("warm", 2)
        turns = 0
        started = time.process_time()
        for index in range(args.loops):
            turns += await agent(f"{args.transport}-{index}", args.round_trips)
        spent = time.process_time() - started
        print(f"turns={turns} cpu_us_per_turn={spent / max(turns, 1) * 1e6:.1f}")
        sockets = app.state.subrelay.upstream.sockets
        if sockets is not None:  # how the turns went: each as only its new items (incremental) or in full
            stats = sockets.stats
            print(f"socket turns incremental={stats.incremental} full={stats.full} bytes_sent={stats.bytes_sent}",
                  file=sys.stderr)
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan

    uvloop.install()
    asyncio.run(run())


if __name__ == "__main__":
    main()
