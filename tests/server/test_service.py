"""subrelay as a service: several workers on one port, metrics, request logs."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import replace

import httpx
import orjson
import pytest

from proxy.server.app import create_app
from proxy.config.file import parse_config
from proxy.state.local.cooldowns import SharedCooldowns
from tests.conftest import write_auth_file
from tests.mock_upstream import ServerThread
from tests.server.test_cli import free_port

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def workers(mock_codex, auth_path, tmp_path):
    """``subrelay serve --workers 2`` against the mock Codex backend (JSON logs captured)."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "CODEX_AUTH_PATH": auth_path, "SUBRELAY_CODEX_BASE_URL": f"{mock_codex.url}/backend-api/codex",
           "SUBRELAY_AUTH_BASE_URL": mock_codex.url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "SUBRELAY_CODEX_CATALOG_SECONDS": "3600"}
    os.mkdir(tmp_path / "metrics")
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port), "--workers", "2",
                                "--log-format", "json"], env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while len(_workers_seen(url, 6)) < 2:
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)
    yield url, log_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def _workers_seen(url: str, tries: int) -> set[int]:
    seen = set()
    for _ in range(tries):
        try:
            seen.add(httpx.get(f"{url}/healthz", headers={"connection": "close"}, timeout=2).json()["worker"])
        except httpx.HTTPError:
            pass
    return seen


def test_two_workers_share_the_port_one_refresh_and_every_login_change(workers, mock_codex, auth_path):
    url, log_path = workers
    assert len(_workers_seen(url, 20)) == 2
    # The token is about to expire: a storm of requests across both workers refreshes it exactly once.
    write_auth_file(auth_path, mock_codex.state.auth_file(expires_in=30))
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=CHAT,
                                                      headers={"connection": "close"}, timeout=30).status_code, range(24)))
    assert statuses == [200] * 24
    assert mock_codex.state.refresh_calls == 1
    # A login to another account (written by `subrelay login` or `codex login`) is used by both workers.
    other = mock_codex.state.auth_file()
    other["tokens"]["account_id"] = "acc-other-login"
    write_auth_file(auth_path, other)
    before = len(mock_codex.state.requests)
    for _ in range(10):
        assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"connection": "close"}).status_code == 200
    accounts = {r["headers"]["chatgpt-account-id"] for r in mock_codex.state.requests[before:]}
    assert accounts == {"acc-other-login"}


def test_a_conversation_and_the_catalogue_are_one_across_workers(workers, mock_codex):
    """Each turn of a ``previous_response_id`` chain may land on either worker (a new connection per
    turn); every turn must still carry the whole conversation upstream. And both workers list the
    account's live catalogue after one backend read between them."""
    url, _ = workers
    previous = None
    for turn in range(8):
        body = {"model": "gpt-5.5", "input": f"turn {turn}", **({"previous_response_id": previous} if previous else {})}
        answer = httpx.post(f"{url}/v1/responses", json=body, headers={"connection": "close"}, timeout=30)
        assert answer.status_code == 200, answer.text
        previous = answer.json()["id"]
    sent = mock_codex.state.requests[-1]["body"]["input"]
    said = [item["content"][0]["text"] for item in sent if item.get("role") == "user"]
    assert said == [f"turn {n}" for n in range(8)]
    deadline = time.monotonic() + 15
    while True:
        listings = [[m["id"] for m in httpx.get(f"{url}/v1/models", headers={"connection": "close"}).json()["data"]]
                    for _ in range(6)]
        if all("nova-1" in ids for ids in listings) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all("nova-1" in ids for ids in listings)  # the account's own model, listed by both workers
    assert mock_codex.state.catalog_calls == 1


def test_metrics_count_a_scripted_mix_and_logs_carry_request_ids_without_secrets(workers, mock_codex, auth_path):
    url, log_path = workers
    mock_codex.state.script = [{"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit",
                                                                  "resets_in_seconds": 60}}}]
    limited = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert limited.status_code == 429
    ok = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-request-id": "req-abc-123"})
    assert ok.headers["x-request-id"] == "req-abc-123"
    generated = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "no-such"}).status_code == 404
    text = httpx.get(f"{url}/metrics").text
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("subrelay_requests_total{")}
    assert counts['subrelay_requests_total{endpoint="chat",model="gpt-5.5",provider="codex",status="200"}'] == 2
    assert counts['subrelay_requests_total{endpoint="chat",model="gpt-5.5",provider="codex",status="429"}'] == 1
    assert 'subrelay_upstream_errors_total{kind="usage_limit_reached",provider="codex"} 1.0' in text
    assert "subrelay_tokens_total{" in text and 'kind="input"' in text
    assert "subrelay_request_seconds_bucket" in text and "subrelay_ttfb_seconds_bucket" in text
    time.sleep(0.5)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    ours = next(line for line in lines if line.get("request_id") == "req-abc-123")
    assert ours["route"] == "codex/gpt-5.5" and ours["status"] == 200 and ours["tokens_in"] == 37
    tokens = orjson.loads(open(auth_path, "rb").read())["tokens"]
    everything = log_path.read_text() + text
    assert all(tokens[name] not in everything for name in ("access_token", "refresh_token", "id_token"))


def test_a_fallback_is_counted_and_noted(mock_codex, auth_path, tmp_path):
    config = parse_config(tomllib.loads('[fallbacks]\n"codex/gpt-5.4" = ["codex/gpt-5.4-mini"]\n'))
    from proxy.config.settings import Settings

    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_auth_path=auth_path, file=config)
    mock_codex.state.script = [{"status": 500, "body": {"detail": "boom"}}]
    with ServerThread(create_app(settings)) as proxy:
        before = _metric(proxy.url, 'subrelay_fallbacks_total{from_provider="codex",to_provider="codex"}')
        answer = httpx.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "model": "codex/gpt-5.4"})
        after = _metric(proxy.url, 'subrelay_fallbacks_total{from_provider="codex",to_provider="codex"}')
    assert answer.headers["x-subrelay-route"] == "codex/gpt-5.4-mini"
    assert after == before + 1


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return 0.0


def test_metrics_are_behind_the_admin_key(proxy_settings):
    with ServerThread(create_app(replace(proxy_settings, admin_key="adm-" + "x" * 20))) as proxy:
        assert httpx.get(f"{proxy.url}/metrics").status_code == 403
        assert httpx.get(f"{proxy.url}/metrics", headers={"x-admin-key": "adm-" + "x" * 20}).status_code == 200


def test_workers_share_cooldowns_through_the_file(tmp_path):
    path = str(tmp_path / "cooldowns.json")
    first, second = SharedCooldowns(path), SharedCooldowns(path)
    first.note(("codex", "account:a", "*"), 120)
    assert 110 < second.remaining("codex", "account:a", "gpt-5.5") <= 120
    assert second.remaining("codex", "account:b", "gpt-5.5") == 0
    second.note(("openai", "key:1", "gpt-4.1"), 30)
    assert first.remaining("openai", "key:1", "gpt-4.1") > 0 and first.active() == 2
