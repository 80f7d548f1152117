"""An agent loop over the Responses WebSocket against the same loop over HTTP, through subrelay.

One loop is what an agent such as the Codex CLI does for a task with ten tool calls: a first
response, then ten tool round trips (each appends a ``function_call`` and its
``function_call_output`` of ``--tool-bytes`` and asks again), eleven responses in all.
- **HTTP**: ``POST /v1/responses`` (stream) on one keep-alive connection, ``store: false``, the whole
  conversation re-sent each turn (what Codex does over HTTP).
- **WebSocket**: one socket per loop, ``store: false``, ``previous_response_id`` plus the new items
  only (what Codex does over its socket).
Both go to the Codex pass-through on ``benchmarks/mock.py`` (the upstream leg is HTTP/SSE either
way). Loops alternate between the two transports; printed: the median and p90 wall time per loop,
subrelay's CPU time per loop (``/proc`` utime+stime of its process tree around each loop, in 10 ms
ticks, so only the mean over many loops means anything), and the driver's own CPU per loop (httpx
costs the HTTP client more than one socket costs the WebSocket client).

    .venv/bin/python -m benchmarks.ws_agent_loop --loops 40
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import websockets

from benchmarks.run import start_mock, start_subrelay

ROUND_TRIPS = 10


def tool_items(turn: int, size: int) -> list[dict]:
    call_id = f"call_{turn:03d}"
    return [{"type": "function_call", "call_id": call_id, "name": "exec_command",
             "arguments": orjson.dumps({"cmd": f"cat file_{turn}.py"}).decode()},
            {"type": "function_call_output", "call_id": call_id, "output": ("x" * 63 + "\n") * (size // 64)}]


def first_input() -> list[dict]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the failing test."}]}]


def request_body(model: str) -> dict:
    return {"model": model, "instructions": "You are a coding agent.", "store": False, "tool_choice": "auto",
            "parallel_tool_calls": False, "tools": [{"type": "function", "name": "exec_command", "parameters": {
                "type": "object", "properties": {"cmd": {"type": "string"}}}}]}


async def http_loop(base: str, model: str, tool_bytes: int) -> None:
    history = first_input()
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for turn in range(ROUND_TRIPS + 1):
            if turn:
                history += tool_items(turn, tool_bytes)
            body = {**request_body(model), "input": history, "stream": True}
            terminal = None
            async with client.stream("POST", "/v1/responses", content=orjson.dumps(body),
                                     headers={"content-type": "application/json"}) as response:
                assert response.status_code == 200, response.status_code
                async for line in response.aiter_lines():
                    if line.startswith('data: {"type":"response.completed"'):
                        terminal = orjson.loads(line[6:])
            assert terminal is not None, "no response.completed"
            history += terminal["response"]["output"]


async def ws_loop(base: str, model: str, tool_bytes: int) -> None:
    async with websockets.connect(base.replace("http", "ws", 1) + "/v1/responses", max_size=None,
                                  compression=None) as socket:
        previous = None
        for turn in range(ROUND_TRIPS + 1):
            message = {"type": "response.create", **request_body(model)}
            if previous is None:
                message["input"] = first_input()
            else:
                message.update(previous_response_id=previous, input=tool_items(turn, tool_bytes))
            await socket.send(orjson.dumps(message).decode())
            while True:
                frame = await socket.recv()
                if frame.startswith('{"type":"response.completed"'):
                    previous = orjson.loads(frame)["response"]["id"]
                    break
                if frame.startswith('{"type":"error"') or frame.startswith('{"type":"response.failed"'):
                    raise RuntimeError(frame[:300])


def measure(server, run, loops: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[tuple[float, float, float]]] = {"http": [], "websocket": []}
    for index in range(loops):
        for name in (("http", "websocket") if index % 2 == 0 else ("websocket", "http")):
            cpu, mine, start = server.cpu_seconds(), time.process_time(), time.perf_counter()
            run(name)
            samples[name].append((time.perf_counter() - start, server.cpu_seconds() - cpu, time.process_time() - mine))
    out = {}
    for name, values in samples.items():
        walls = sorted(wall for wall, _, _ in values)
        out[name] = {"loops": len(values), "wall_p50_ms": statistics.median(walls) * 1000,
                     "wall_p90_ms": walls[int(len(walls) * 0.9) - 1] * 1000,
                     "cpu_ms_per_loop": sum(cpu for _, cpu, _ in values) / len(values) * 1000,
                     "client_cpu_ms_per_loop": sum(mine for _, _, mine in values) / len(values) * 1000}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=40, help="loops per transport")
    parser.add_argument("--deltas", type=int, default=20, help="text deltas in each response")
    parser.add_argument("--tool-bytes", type=int, default=2048, help="size of each tool output")
    args = parser.parse_args(argv)
    model = f"codex/bench-d{args.deltas}"
    servers = []
    with tempfile.TemporaryDirectory(prefix="subrelay-ws-bench-") as tmp:
        workdir = Path(tmp)
        try:
            mock = start_mock(workdir, "--full-output")
            servers.append(mock)
            subrelay = start_subrelay(workdir, mock, mock)
            servers.append(subrelay)
            loop = asyncio.new_event_loop()

            def run(name: str) -> None:
                runner = http_loop if name == "http" else ws_loop
                loop.run_until_complete(runner(subrelay.base, model, args.tool_bytes))

            for name in ("http", "websocket", "http", "websocket"):  # warm-up
                run(name)
            results = measure(subrelay, run, args.loops)
            loop.close()
        finally:
            for server in reversed(servers):
                server.stop()
    print(f"agent loop: 1 + {ROUND_TRIPS} tool round trips, {args.deltas} deltas a response, "
          f"{args.tool_bytes}-byte tool outputs, {args.loops} loops per transport (interleaved)")
    print(f"{'transport':<10} {'loop p50 ms':>12} {'loop p90 ms':>12} {'subrelay CPU ms/loop':>21} "
          f"{'client CPU ms/loop':>19}")
    for name, figures in results.items():
        print(f"{name:<10} {figures['wall_p50_ms']:>12.1f} {figures['wall_p90_ms']:>12.1f} "
              f"{figures['cpu_ms_per_loop']:>21.1f} {figures['client_cpu_ms_per_loop']:>19.1f}")
    return results


if __name__ == "__main__":
    main()
