"""The request ledger's size per million requests, measured: N realistic entries appended in the flusher's
batches to a fresh SQLite ledger (and, with --redis URL, to a Redis stream), then the file's size after a
checkpoint (and the stream's MEMORY USAGE), scaled to a million.

    .venv/bin/python benchmarks/probes/ledger_size.py --entries 100000 [--redis redis://127.0.0.1:6379]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from proxy.observe.ledger import iso_time  # noqa: E402
from proxy.state.local.ledger import SqliteLedgerStore  # noqa: E402

PEOPLE = [f"member{n:02d}" for n in range(40)]


def entry(n: int, now: float) -> dict:
    rng = random.Random(n)
    fallback = rng.random() < 0.1
    return {"time": iso_time(now + n * 0.5), "person": rng.choice(PEOPLE), "door": rng.choice(["chat", "responses"]),
            "model": "gpt-5.5", "upstream_model": "gpt-5.5", "route": "team/gpt-5.5" if fallback else "codex/gpt-5.5",
            "provider": "team" if fallback else "codex",
            "decision": "quota-fallback codex/gpt-5.5 (primary window 96% used) -> team/gpt-5.5" if fallback else None,
            "status": 200, "error": None, "input_tokens": rng.randint(2000, 90000), "cached_tokens": rng.randint(0, 60000),
            "output_tokens": rng.randint(10, 4000), "reasoning_tokens": rng.randint(0, 2000),
            "cost": round(rng.random() / 10, 6) if fallback else None, "ttfb_ms": rng.randint(300, 3000),
            "total_ms": rng.randint(1000, 60000), "request_id": os.urandom(16).hex(), "client": "codex_cli_rs",
            "client_version": "0.61.0"}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--redis")
    args = parser.parse_args()
    now = time.time()
    path = os.path.join(tempfile.mkdtemp(prefix="subrelay-ledger-size-"), "ledger.sqlite3")
    store = SqliteLedgerStore(path)
    started = time.perf_counter()
    for start in range(0, args.entries, 500):
        batch = [entry(n, now) for n in range(start, min(start + 500, args.entries))]
        await store.append("requests", batch, [now + n * 0.5 for n in range(start, start + len(batch))])
    elapsed = time.perf_counter() - started
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.close()
    size = os.path.getsize(path)
    scale = 1_000_000 / args.entries
    print(f"sqlite: {args.entries} entries, {size / 1e6:.1f} MB ({size / args.entries:.0f} B/entry), "
          f"{size * scale / 1e6:.0f} MB per million; appended in {elapsed:.1f} s "
          f"({elapsed / args.entries * 1e6:.0f} us/entry, off the request path)")
    if args.redis:
        import uuid

        from proxy.state.redis.ledger import RedisLedgerStore

        prefix = uuid.uuid4().hex[:16]
        redis_store = RedisLedgerStore.from_url(args.redis, {"SUBRELAY_REDIS_PREFIX": prefix})
        for start in range(0, args.entries, 500):
            batch = [entry(n, now) for n in range(start, min(start + 500, args.entries))]
            await redis_store.append("requests", batch, [now + n * 0.5 for n in range(start, start + len(batch))])
        key = "{" + prefix + "}:ledger:requests"
        used = await redis_store._redis.memory_usage(key, samples=0)
        await redis_store._redis.delete(key, key + ":head")
        await redis_store.close()
        print(f"redis: {args.entries} entries, MEMORY USAGE {used / 1e6:.1f} MB ({used / args.entries:.0f} B/entry), "
              f"{used * scale / 1e6:.0f} MB per million")


if __name__ == "__main__":
    asyncio.run(main())
