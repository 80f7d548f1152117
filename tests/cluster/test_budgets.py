"""A money budget holds across three replicas sharing Redis (issue 28): $1.00 on the team key admits
exactly ten concurrent $0.10 requests of thirty, whichever replica each lands on, and the cost seen in
the usage figures is $1.00, not a cent more. The budget is one more rule in the ADMIT script: still one
Redis round trip per request."""

from __future__ import annotations

import asyncio
import json
import os
import time

import openai

from tests.cluster.conftest import start_cluster
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.team.test_money import PRICEY


async def test_a_one_dollar_budget_admits_ten_of_thirty_concurrent_ten_cent_requests_across_replicas(tmp_path):
    app = MockOpenAIServer()
    app.state = OpenAIMockState(delta_count=4, record=False)
    with ServerThread(app) as team_key:
        config = tmp_path / "subrelay.toml"
        config.write_text(PRICEY.format(url=team_key.url))
        with start_cluster({"SUBRELAY_CONFIG": str(config), "TEAM_KEY": app.state.api_key}) as cluster:
            added = cluster.cli("users", "add", "spender", "--budget", "month=1.00", "--json")
            assert added.returncode == 0, added.stderr
            client = openai.AsyncOpenAI(base_url=cluster.url + "/v1", api_key=json.loads(added.stdout)["key"],
                                        max_retries=0)
            answers = await asyncio.gather(*(client.chat.completions.with_raw_response.create(
                model="team/pricey", max_tokens=4, messages=[{"role": "user", "content": f"spend {i}"}])
                for i in range(30)), return_exceptions=True)
            await client.close()
            admitted = [a for a in answers if not isinstance(a, Exception)]
            refused = [a for a in answers if isinstance(a, Exception)]
            replicas = {a.headers["x-subrelay-replica"] for a in admitted}
            print(f"\n$1.00 budget: {len(admitted)} of 30 admitted, on replicas {sorted(replicas)}")
            assert len(admitted) == 10
            assert all(isinstance(r, openai.RateLimitError) and r.code == "budget_exceeded" for r in refused)
            assert len(replicas) >= 2
            deadline = time.monotonic() + 15
            while True:  # every replica flushes its usage figures within a few seconds
                usage = json.loads(cluster.cli("usage", "--user", "spender", "--json").stdout or "{}")
                total = usage.get("totals", {}).get("cost_micros", 0)
                if total >= 1_000_000 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert total == 1_000_000
