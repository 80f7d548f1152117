"""Team mode's own request path alone, exactly counted: the key looked up, the person's concurrency slot,
the admission (limits and budget reserved), the answer's plan windows, the settle and the usage row; no
ledger, no upstream, no door. Between two ``getppid()`` marks, so callgrind's middle dump counts N of them:

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/ta \
        .venv/bin/python benchmarks/probes/team_admission.py . 400 full   # then: grep totals /tmp/ta.2 (/ 400)

Modes: ``harness`` (the record alone: subtract it), ``identify`` (the key lookup), ``none`` (a user with no
limits), ``limits`` (rpm, tpm, daily tokens), ``full`` (and a monthly budget and a concurrency cap of 4).
"""
import asyncio
import os
import sys
import tempfile
import types

sys.path.insert(0, sys.argv[1])
N = int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "full"
from proxy.team.gate import TeamGate
from proxy.team.spend import Money
from proxy.money.prices import default_table
from proxy.upstream.routing import Provider, Route
from proxy.observe.metrics import RequestRecord
from proxy.hub.events import Usage

async def main():
    d = tempfile.mkdtemp(); env = {"SUBRELAY_STATE_DIR": d}
    from proxy.team.context import open_team
    from proxy.team.users import add_user
    team = open_team(env, create=True)
    limits = {} if mode in ("none", "harness", "identify") else dict(rpm=10**6, tpm=10**12, daily_tokens=10**12)
    if mode == "full": limits.update(budgets={"month": 10**6}, max_concurrent=4)
    _, key = await add_user(team.store, "bench", **limits)
    await team.store.close()
    money = Money(prices=default_table().with_overrides({"bench/*": {"input": 1.25, "output": 10}}))
    gate = TeamGate(env, money=money); gate.open()
    route = Route(Provider("bench", object(), object(), "custom"), "bench-d1")
    body = b'{"model":"bench/bench-d1","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
    request = types.SimpleNamespace(model="bench/bench-d1", inbound=types.SimpleNamespace(raw=body, format="chat"), max_output_tokens=16)
    presented = key.encode()
    async def one():
        record = RequestRecord.start({"method": "POST", "path": "/v1/chat/completions"}, None)
        if mode == "harness":
            record.status = 200; record.usage = Usage(12, 5, 17)
            return
        if mode == "identify":
            caller, user = await gate.identify(presented, may_defer=True)
            return
        caller, user = await gate.identify(presented, may_defer=True)
        gate.caps.take(caller.scope_id, "request", user.max_concurrent)
        admission = gate.admission(user)
        routes = await admission.admit([route], request, record)
        await admission.opened(routes[0], {})
        record.status = 200; record.usage = Usage(12, 5, 17)
        record.person = caller.person
        await admission.settle(record)
        gate.caps.give_back(caller.scope_id, "request")
    for _ in range(50): await one()
    os.getppid()
    for _ in range(N): await one()
    os.getppid()
    await gate.close()
asyncio.run(main())
