"""Cooldowns after limits: keyed by what is limited, never a local refusal, sane reset times."""

from __future__ import annotations

import httpx

from proxy.errors import MAX_RETRY_AFTER
from proxy.state.cooldowns import Cooldowns
from tests.conftest import write_auth_file
from tests.upstream.test_e2e_routing import _openrouter_server, openrouter, proxy  # noqa: F401  (fixtures)

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}
USAGE_LIMIT = {"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit", "plan_type": "plus",
                                                 "resets_in_seconds": 1e9}}}


def _login_as(mock_codex, path: str, account: str) -> None:
    data = mock_codex.state.auth_file()
    data["tokens"]["account_id"] = account
    write_auth_file(path, data)


def test_a_lone_target_is_always_sent_and_the_upstream_answer_reaches_the_client(proxy_url, mock_codex):
    mock_codex.state.script = [USAGE_LIMIT, {"status": 500, "body": {"detail": "backend broke"}}]
    limited = httpx.post(f"{proxy_url}/chat/completions", json=CHAT)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "usage_limit_reached"
    assert "Plus plan" in limited.json()["error"]["message"]
    assert 0 < int(limited.headers["retry-after"]) <= MAX_RETRY_AFTER  # 1e9 s (31 years) was capped
    # No local refusal: the next request goes upstream, and its own answer (a 500) is what the client sees.
    broken = httpx.post(f"{proxy_url}/chat/completions", json=CHAT)
    assert broken.status_code == 502 and "backend broke" in broken.json()["error"]["message"]
    assert len(mock_codex.state.requests) == 2
    assert httpx.post(f"{proxy_url}/chat/completions", json=CHAT).status_code == 200


def test_nonsense_retry_after_values_are_ignored_not_a_500(proxy_url, mock_codex):
    for value in ("inf", "nan", "-5", "soon", "1e400"):
        mock_codex.state.script = [{"status": 429, "body": {"error": {"message": "slow"}}, "headers": {"Retry-After": value}}]
        response = httpx.post(f"{proxy_url}/chat/completions", json=CHAT)
        assert response.status_code == 429, (value, response.text)
        assert response.headers.get("retry-after", "0").isdigit()


def test_a_usage_limit_skips_the_account_in_a_chain_until_another_account_logs_in(proxy, mock_codex, auth_path):  # noqa: F811
    _login_as(mock_codex, auth_path, "acc-first")
    mock_codex.state.script = [USAGE_LIMIT]
    body = {"model": "codex/gpt-5.4", "messages": CHAT["messages"]}
    first = httpx.post(f"{proxy}/chat/completions", json=body)
    second = httpx.post(f"{proxy}/chat/completions", json=body)
    # The plan's limit covers both Codex models of that account: the chain goes to OpenRouter.
    assert first.headers["x-subrelay-route"] == second.headers["x-subrelay-route"] == "openrouter/openai/gpt-5.4"
    assert len(mock_codex.state.requests) == 1
    _login_as(mock_codex, auth_path, "acc-second")
    third = httpx.post(f"{proxy}/chat/completions", json=body)
    assert third.status_code == 200 and third.headers["x-subrelay-route"] == "codex/gpt-5.4"


def test_cooldowns_are_per_model_unless_the_whole_credential_is_limited():
    now = [1000.0]
    cooldowns = Cooldowns(clock=lambda: now[0])
    cooldowns.note(("openai", "key:1", "gpt-4.1"), 30)
    assert cooldowns.remaining("openai", "key:1", "gpt-4.1") == 30
    assert cooldowns.remaining("openai", "key:1", "gpt-4o") == 0  # another model of the same key
    assert cooldowns.remaining("openai", "key:2", "gpt-4.1") == 0  # another key
    cooldowns.note(("codex", "account:a", "*"), 600)
    assert cooldowns.remaining("codex", "account:a", "gpt-5.4-mini") == 600
    assert cooldowns.remaining("codex", "account:b", "gpt-5.4-mini") == 0
    cooldowns.note(("codex", "account:a", "*"), float("inf"))
    cooldowns.note(("codex", "account:a", "gpt-5.4"), 1e12)
    assert cooldowns.remaining("codex", "account:a", "gpt-5.4") == MAX_RETRY_AFTER
    now[0] += MAX_RETRY_AFTER + 1
    assert cooldowns.remaining("codex", "account:a", "gpt-5.4") == 0 and cooldowns.active() == 0
