"""An agent loop of tool round trips through each of subrelay's doors to the Codex backend, over the backend's
WebSocket (incremental turns) and over HTTP (the whole conversation every turn), in the same run.

The upstream is the mock Codex backend of the tests (``tests/mock_upstream``, ``--websocket``), which models
the socket faithfully: per-connection state, ``previous_response_id`` accepted only for the connection's
last response, a ``[[calls:N]]`` agent that calls a tool after each tool output until N outputs are in.
Two subrelays run side by side on it, ``SUBRELAY_CODEX_TRANSPORT=websocket`` and ``=http``; each loop goes
through one door of one of them, the transports alternating. Doors, each as its clients speak it:
- ``chat``: Chat Completions, the whole history every turn (LangChain, the Agents SDK's chat model);
- ``responses_http``: ``POST /v1/responses`` streamed, ``store: false``, the whole history (the Codex CLI
  over HTTP);
- ``responses_ws``: subrelay's Responses WebSocket, ``previous_response_id`` + new items (the Codex CLI's
  built-in provider);
- ``messages``: Anthropic Messages, the whole history (Claude Code).
Measured per door and transport: bytes subrelay uploaded to the backend per turn and per loop (what the
mock received: the HTTP body, or the ``response.create`` frame), subrelay's CPU per turn (``/proc`` utime +
stime of its process tree around the loops, 10 ms ticks: only the mean over many turns means anything) and
the wall time per turn seen by the client.

    .venv/bin/python -m benchmarks.codex_socket_loop --round-trips 20 --loops 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import websockets

from benchmarks.run import Server, start

DOORS = ("chat", "responses_http", "responses_ws", "messages")
TRANSPORTS = ("websocket", "http")
MODEL = "gpt-5.5"
INSTRUCTIONS = "You are a coding agent. Use the tool to inspect the repository, then answer."


def tool_output(step: int, size: int) -> str:
    return (f"step {step}: " + "x" * 62 + "\n") * max(1, size // 72)


def task(loop_id: str, trips: int) -> str:
    return f"[[calls:{trips}]] Fix the failing test ({loop_id})."


async def chat_loop(client: httpx.AsyncClient, loop_id: str, trips: int, size: int) -> list[float]:
    tools = [{"type": "function", "function": {"name": "exec_command", "parameters": {
        "type": "object", "properties": {"step": {"type": "integer"}}}}}]
    messages: list[dict] = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": task(loop_id, trips)}]
    walls = []
    for _ in range(trips + 1):
        start = time.perf_counter()
        response = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "tools": tools})
        walls.append(time.perf_counter() - start)
        response.raise_for_status()
        message = response.json()["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        messages.append({"role": "assistant", "content": message.get("content"), **({"tool_calls": calls} if calls else {})})
        if not calls:
            return walls
        step = orjson.loads(calls[0]["function"]["arguments"])["step"]
        messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": tool_output(step, size)})
    raise RuntimeError("the agent never finished")


def _responses_tools() -> list[dict]:
    return [{"type": "function", "name": "exec_command", "parameters": {
        "type": "object", "properties": {"step": {"type": "integer"}}}}]


def _responses_body(loop_id: str) -> dict:
    return {"model": MODEL, "instructions": INSTRUCTIONS, "tools": _responses_tools(), "store": False,
            "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": f"thread-{loop_id}"}


def _next_items(output: list[dict], size: int) -> list[dict] | None:
    calls = [item for item in output if item.get("type") == "function_call"]
    if not calls:
        return None
    step = orjson.loads(calls[0]["arguments"])["step"]
    return [{"type": "function_call_output", "call_id": calls[0]["call_id"], "output": tool_output(step, size)}]


async def responses_http_loop(client: httpx.AsyncClient, loop_id: str, trips: int, size: int) -> list[float]:
    history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": task(loop_id, trips)}]}]
    walls = []
    for _ in range(trips + 1):
        start = time.perf_counter()
        completed = None
        async with client.stream("POST", "/v1/responses", json={**_responses_body(loop_id), "input": history,
                                                                "stream": True}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"response.completed"' in line[:40]:
                    completed = orjson.loads(line[6:])
        walls.append(time.perf_counter() - start)
        if completed is None:
            raise RuntimeError("no response.completed")
        output = completed["response"]["output"]
        history += output
        new = _next_items(output, size)
        if new is None:
            return walls
        history += new
    raise RuntimeError("the agent never finished")


async def responses_ws_loop(base: str, loop_id: str, trips: int, size: int) -> list[float]:
    walls = []
    async with websockets.connect(base.replace("http", "ws", 1) + "/v1/responses", max_size=None) as socket:
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": task(loop_id, trips)}]}]
        previous = None
        for _ in range(trips + 1):
            message = {"type": "response.create", **_responses_body(loop_id), "input": items}
            if previous:
                message["previous_response_id"] = previous
            start = time.perf_counter()
            await socket.send(orjson.dumps(message).decode())
            while True:
                event = orjson.loads(await socket.recv())
                if event["type"] == "response.completed":
                    break
                if event["type"] in ("error", "response.failed"):
                    raise RuntimeError(str(event)[:300])
            walls.append(time.perf_counter() - start)
            previous = event["response"]["id"]
            items = _next_items(event["response"]["output"], size)
            if items is None:
                return walls
    raise RuntimeError("the agent never finished")


async def messages_loop(client: httpx.AsyncClient, loop_id: str, trips: int, size: int) -> list[float]:
    tools = [{"name": "exec_command", "input_schema": {"type": "object", "properties": {"step": {"type": "integer"}}}}]
    messages: list[dict] = [{"role": "user", "content": task(loop_id, trips)}]
    walls = []
    for _ in range(trips + 1):
        start = time.perf_counter()
        response = await client.post("/v1/messages", json={"model": MODEL, "max_tokens": 1024, "system": INSTRUCTIONS,
                                                           "messages": messages, "tools": tools})
        walls.append(time.perf_counter() - start)
        response.raise_for_status()
        content = response.json()["content"]
        messages.append({"role": "assistant", "content": content})
        uses = [block for block in content if block["type"] == "tool_use"]
        if not uses:
            return walls
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0]["id"],
                                                      "content": tool_output(uses[0]["input"]["step"], size)}]})
    raise RuntimeError("the agent never finished")


async def one_loop(door: str, base: str, loop_id: str, trips: int, size: int) -> list[float]:
    if door == "responses_ws":
        return await responses_ws_loop(base, loop_id, trips, size)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        runner = {"chat": chat_loop, "responses_http": responses_http_loop, "messages": messages_loop}[door]
        return await runner(client, loop_id, trips, size)


def uploads(mock: Server) -> list[dict]:
    return httpx.post(f"{mock.base}/_mock/uploads", json={"clear": True}, timeout=10).json()


def measure(mock: Server, subrelays: dict[str, Server], trips: int, loops: int, size: int,
            doors: tuple[str, ...] = DOORS) -> dict:
    loop = asyncio.new_event_loop()
    results: dict = {}
    for door in doors:
        for transport in TRANSPORTS:  # warm-up (imports, connections), not counted
            loop.run_until_complete(one_loop(door, subrelays[transport].base, f"warm-{door}-{transport}", 2, size))
        uploads(mock)
        rows = {transport: {"walls": [], "cpu": 0.0, "turns": 0, "uploads": []} for transport in TRANSPORTS}
        for index in range(loops):
            for transport in (TRANSPORTS if index % 2 == 0 else TRANSPORTS[::-1]):
                server, row = subrelays[transport], rows[transport]
                cpu = server.cpu_seconds()
                walls = loop.run_until_complete(one_loop(door, server.base, f"{door}-{transport}-{index}", trips, size))
                row["cpu"] += server.cpu_seconds() - cpu
                row["walls"] += walls
                row["turns"] += len(walls)
                row["uploads"].append(uploads(mock))
        results[door] = {transport: _summary(row) for transport, row in rows.items()}
    loop.close()
    return results


def _summary(row: dict) -> dict:
    first = row["uploads"][0]
    per_loop = [sum(entry["bytes"] for entry in entries) for entries in row["uploads"]]
    return {"turns_per_loop": len(first), "bytes_per_turn": [entry["bytes"] for entry in first],
            "bytes_per_loop": statistics.mean(per_loop),
            "incremental_turns": sum(entry.get("incremental", False) for entry in first),
            "transports": sorted({entry["transport"] for entry in first}),
            "cpu_ms_per_turn": row["cpu"] / row["turns"] * 1000,
            "wall_ms_per_turn_p50": statistics.median(row["walls"]) * 1000}


def report(results: dict, trips: int, loops: int, size: int) -> str:
    lines = [f"agent loop: {trips} tool round trips ({trips + 1} responses), {size}-byte tool outputs, "
             f"{loops} loops per door and transport (interleaved)", "",
             "| door | transport | upstream | incremental turns | KB uploaded per loop | WS/HTTP bytes | "
             "subrelay CPU ms/turn | wall ms/turn (p50) |", "|---|---|---|---|---|---|---|---|"]
    for door, rows in results.items():
        for transport, row in rows.items():
            ratio = row["bytes_per_loop"] / rows["http"]["bytes_per_loop"]
            lines.append(f"| {door} | {transport} | {'+'.join(row['transports'])} | "
                         f"{row['incremental_turns']}/{row['turns_per_loop']} | {row['bytes_per_loop'] / 1024:.1f} | "
                         f"{ratio:.1%} | {row['cpu_ms_per_turn']:.2f} | {row['wall_ms_per_turn_p50']:.2f} |")
    lines += ["", "bytes uploaded per turn (first loop), turn 1 to the last:"]
    for door, rows in results.items():
        for transport, row in rows.items():
            lines.append(f"  {door:<15} {transport:<9} " + " ".join(str(b) for b in row["bytes_per_turn"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--loops", type=int, default=6, help="loops per door and transport")
    parser.add_argument("--tool-bytes", type=int, default=4096, help="size of each tool output")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--doors", default=",".join(DOORS), help="which doors, comma-separated")
    args = parser.parse_args(argv)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="subrelay-codex-socket-bench-") as tmp:
        workdir = Path(tmp)
        auth = workdir / "auth.json"
        try:
            mock = start("mock-codex", [sys.executable, "-m", "tests.mock_upstream", "--port", "{port}", "--websocket",
                                        "--auth-file", str(auth)], workdir)
            servers.append(mock)
            subrelays = {}
            for transport in TRANSPORTS:
                env = {"CODEX_AUTH_PATH": str(auth), "SUBRELAY_CODEX_BASE_URL": f"{mock.base}/backend-api/codex",
                       "SUBRELAY_LOG_LEVEL": "warning", "SUBRELAY_CODEX_TRANSPORT": transport,
                       "SUBRELAY_CONFIG": "", "HOME": str(workdir)}
                subrelays[transport] = start(f"subrelay-{transport}", [sys.executable, "-m", "proxy", "serve", "--port",
                                                                       "{port}"], workdir, env)
                servers.append(subrelays[transport])
            doors = tuple(door for door in args.doors.split(",") if door in DOORS)
            results = measure(mock, subrelays, args.round_trips, args.loops, args.tool_bytes, doors)
        finally:
            for server in reversed(servers):
                server.stop()
    print(report(results, args.round_trips, args.loops, args.tool_bytes))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
