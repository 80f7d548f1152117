"""A money budget holds across ``subrelay serve --workers 2`` (issue 28): the workers reserve in the one
SQLite store, in the same transaction as the token limits, so $1.00 admits exactly ten concurrent $0.10
requests of thirty and the usage figures say $1.00."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.server.test_cli import free_port
from tests.server.test_service import _workers_seen
from tests.team.test_money import ASK, PRICEY
from tests.team.test_workers import users


def test_a_one_dollar_budget_admits_ten_of_thirty_concurrent_ten_cent_requests_across_two_workers(
        mock_codex, auth_path, tmp_path):
    app = MockOpenAIServer()
    app.state = OpenAIMockState(delta_count=4, record=False)
    with ServerThread(app) as team_key:
        config = tmp_path / "subrelay.toml"
        config.write_text(PRICEY.format(url=team_key.url))
        env = {**os.environ, "CODEX_AUTH_PATH": auth_path, "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex",
               "SUBRELAY_AUTH_BASE_URL": mock_codex.url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
               "SUBRELAY_CODEX_CATALOG_SECONDS": "3600", "SUBRELAY_STATE_DIR": str(tmp_path / "state"),
               "SUBRELAY_CONFIG": str(config), "TEAM_KEY": app.state.api_key}
        os.mkdir(tmp_path / "metrics")
        os.mkdir(tmp_path / "state", 0o700)
        key = users(env, "add", "spender", "--budget", "month=1.00")
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port), "--workers", "2"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "wb"))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while len(_workers_seen(url, 6)) < 2:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.2)

            def ask(_: int) -> int:
                return httpx.post(f"{url}/v1/chat/completions", json=ASK, timeout=60,
                                  headers={"authorization": f"Bearer {key}", "connection": "close"}).status_code

            with ThreadPoolExecutor(30) as pool:
                statuses = list(pool.map(ask, range(30)))
            print(f"\n$1.00 budget on 2 workers: {statuses.count(200)} of 30 admitted")
            assert statuses.count(200) == 10 and statuses.count(429) == 20
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        usage = json.loads(subprocess.run([sys.executable, "-m", "proxy", "usage", "--json"], env=env,
                                          capture_output=True, text=True, timeout=60).stdout)
        assert usage["totals"]["cost_micros"] == 1_000_000 and usage["totals"]["requests"] == 30
