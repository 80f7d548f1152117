"""A small, fast load driver: N keep-alive connections, each sending requests back to back.

Hand-written HTTP/1.1 over asyncio streams (uvloop) instead of an HTTP client library, so the
driver costs little per request and can time the first body byte exactly (TTFB). It stops by
itself after ``--requests`` or ``--seconds``, whichever comes first, and prints one JSON object:
per-request latency and TTFB in milliseconds, errors, and the wall time.

    python -m benchmarks.load --url http://127.0.0.1:8787/v1/chat/completions --body '{...}' -c 10 -n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import orjson


class Result:
    __slots__ = ("latencies", "ttfbs", "errors", "statuses", "bytes", "error_kinds")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.errors = 0
        self.statuses: dict[int, int] = {}
        self.bytes = 0
        self.error_kinds: dict[str, int] = {}


async def _read_response(reader: asyncio.StreamReader, started: float, result: Result) -> bool:
    """Read one response; returns whether the connection may be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    result.statuses[status] = result.statuses.get(status, 0) + 1
    lower = head.lower()
    ttfb = None
    size = 0
    if b"transfer-encoding: chunked" in lower:
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";")[0], 16)
            if ttfb is None:
                ttfb = time.perf_counter()
            if length == 0:
                await reader.readuntil(b"\r\n")
                break
            await reader.readexactly(length + 2)
            size += length
    else:
        marker = lower.find(b"content-length:")
        length = int(lower[marker + 15:lower.find(b"\r\n", marker)]) if marker >= 0 else 0
        if length:
            await reader.readexactly(length)
        ttfb = time.perf_counter()
        size = length
    finished = time.perf_counter()
    result.bytes += size
    if status == 200:
        result.latencies.append((finished - started) * 1000)
        result.ttfbs.append(((ttfb or finished) - started) * 1000)
    else:
        result.errors += 1
    return b"connection: close" not in lower


async def _worker(host: str, port: int, request: bytes, budget: list[int], deadline: float, result: Result) -> None:
    reader = writer = None
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            if not await _read_response(reader, started, result):
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.errors += 1
            kind = type(exc).__name__
            result.error_kinds[kind] = result.error_kinds.get(kind, 0) + 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run(url: str, body: bytes, concurrency: int, requests: int, seconds: float,
              headers: dict[str, str] | None = None) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load driver only targets loopback addresses")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body
    result = Result()
    budget = [requests]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, request, budget, deadline, result) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"latencies_ms": result.latencies, "ttfb_ms": result.ttfbs, "errors": result.errors,
            "statuses": result.statuses, "wall_s": wall, "bytes": result.bytes,
            "error_kinds": result.error_kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description="loopback HTTP load driver")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("-H", "--header", action="append", default=[])
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    outcome = asyncio.run(run(args.url, args.body.encode(), args.concurrency, args.requests, args.seconds, headers))
    sys.stdout.buffer.write(orjson.dumps(outcome, option=orjson.OPT_NON_STR_KEYS))


if __name__ == "__main__":
    main()
