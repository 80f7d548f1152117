"""Instructions per request-ledger entry in isolation: K records made into entries, linked, hashed and
written to a fresh ``ledger.sqlite3`` per flush, R flushes, between two ``getppid()`` marks:

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/le \\
        .venv/bin/python benchmarks/probes/ledger_entry.py . 100 4     # then: grep totals /tmp/le.2  (/ K*R)

K = 1 shows the fixed cost of a flush (its thread hop and transaction); K = 100 the cost per entry.
"""

import asyncio
import os
import sys
import tempfile
import time


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    per_flush, flushes = int(sys.argv[2]), int(sys.argv[3])
    from proxy.hub.events import Usage
    from proxy.observe.ledger import RequestLedger
    from proxy.observe.metrics import RequestRecord
    from proxy.state.local.ledger import SqliteLedgerStore

    def record() -> RequestRecord:
        made = RequestRecord.start({"method": "POST", "path": "/v1/chat/completions"}, None)
        made.routed("bench/bench-d1", "bench/bench-d1", "bench", True, "bench-d1")
        made.status, made.usage, made.person = 200, Usage(12, 5, 17), "bench"
        made.first_byte, made.ended = made.started + 0.001, made.started + 0.002
        return made

    async def run() -> None:
        ledger = RequestLedger(SqliteLedgerStore(os.path.join(tempfile.mkdtemp(), "ledger.sqlite3")))
        ledger._next_prune = time.time() + 1e9  # no retention pass in the measured part
        for _ in range(3):  # warm-up: the table, the statements
            for _ in range(per_flush):
                ledger.add(record(), b"python-httpx/0.28")
            await ledger.flush()
        batches = [[record() for _ in range(per_flush)] for _ in range(flushes)]
        os.getppid()
        for batch in batches:
            for made in batch:
                ledger.add(made, b"python-httpx/0.28")
            await ledger.flush()
        os.getppid()

    asyncio.run(run())


if __name__ == "__main__":
    main()
