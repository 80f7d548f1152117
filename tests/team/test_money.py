"""Money in team mode (issue 28): the price table, budgets reserved and settled with the other limits,
refusals that name the budget, the plan staying free, cost in the usage figures, the effort ceiling."""

from __future__ import annotations

import time
import tomllib
from dataclasses import replace

import anthropic
import httpx
import openai
import pytest

from proxy.config.file import parse_config
from proxy.errors import ConfigError
from proxy.hub.events import Usage
from proxy.money.budgets import Budget, BudgetError, parse_budgets
from proxy.money.prices import PriceError, cost_of, default_table, dollars, to_micros
from proxy.server.app import create_app
from proxy.team.context import open_team
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.team.test_request_path import device_login, make_user, post, team_env  # noqa: F401 (a fixture)

# "team/pricey" costs $0.025 an output token and nothing for input: a 4-token answer (max_tokens=4, the
# mock answers 4 tokens) is reserved at exactly $0.10 and costs exactly $0.10.
PRICEY = '''
[providers.team]
kind = "custom"
base_url = "{url}/v1"
api_key_env = "TEAM_KEY"
models = ["pricey", "gpt-5.4"]
[prices."team/pricey"]
input = 0
output = 25000
[prices."team/gpt-5.4"]
input = 0
output = 25000
'''
ASK = {"model": "team/pricey", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


# -- the price table -----------------------------------------------------------------------------------


def test_a_request_is_priced_from_the_table_cached_and_reasoning_tokens_at_their_own_rates():
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000,
                  cached_tokens=400_000, reasoning_tokens=0)
    cost = cost_of("openai", "gpt-5.4", usage)
    # 600k fresh input at $2.50/M, 400k cached at $0.25/M, 1M output at $15/M
    assert cost.micros == 1_500_000 + 100_000 + 15_000_000 and cost.usd == "16.60"
    assert cost.price.date and cost.price.source.startswith("https://openai.com")


def test_a_chatgpt_plan_request_costs_nothing_and_an_unknown_model_is_unknown_not_guessed():
    usage = Usage(prompt_tokens=10_000, completion_tokens=5_000, total_tokens=15_000)
    assert cost_of("codex", "gpt-5.5", usage).micros == 0
    assert cost_of("openai", "no-such-model", usage) is None
    assert cost_of("team", "gpt-5.4", usage, kind="custom") is None  # a custom provider: no price shipped


def test_subrelay_toml_prices_win_and_a_provider_named_otherwise_finds_its_kinds_prices():
    table = default_table().with_overrides({"team/gpt-5.4": {"input": "1", "output": 2}})
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000)
    assert table.cost_of("team", "gpt-5.4", usage, kind="openai").micros == 3_000_000
    assert table.cost_of("work", "gpt-5.4", usage, kind="openai").micros == 17_500_000  # the openai kind's
    assert table.cost_of("team", "claude-sonnet-4-5-20250929", usage, kind="anthropic").micros == 18_000_000


def test_money_is_exact_integer_micro_dollars():
    assert to_micros("0.10") == 100_000 and to_micros(0.1) == 100_000 and to_micros("$20") == 20_000_000
    assert dollars(1_234_567) == "1.234567" and dollars(100_000) == "0.10" and dollars(0) == "0.00"
    for bad in (-1, "ten", True, None, float("nan")):
        with pytest.raises(PriceError):
            to_micros(bad)


def test_budget_periods_reset_at_their_calendar_end_or_roll():
    wednesday = 1_765_368_000.0  # 2025-12-10 12:00 UTC, a Wednesday
    assert Budget("day", 1).window(wednesday) == ("2025-12-10", 43_200.0)
    assert Budget("week", 1).window(wednesday) == ("2025-W50", 4.5 * 86400)
    assert Budget("month", 1).window(wednesday) == ("2025-12", 21.5 * 86400)
    assert parse_budgets({"rolling:7d@team": "5"}) == (Budget("rolling:604800", 5_000_000, "team"),)
    assert Budget("rolling:604800", 1).window(wednesday) == ("rolling:604800", 604800.0)
    for bad in ({"fortnight": 1}, {"month@": 1}, {"month": -2}, {"rolling:0d": 1}, ["month"]):
        with pytest.raises(BudgetError):
            parse_budgets(bad)


def test_a_bad_price_or_budget_in_subrelay_toml_stops_start_up_naming_the_key():
    with pytest.raises(ConfigError, match="prices"):
        parse_config(tomllib.loads('[prices."team/x"]\ninput = "cheap"\noutput = 1\n'))
    with pytest.raises(ConfigError, match="budgets"):
        parse_config(tomllib.loads('[budgets]\nfortnight = 5\n'))


def test_subrelay_prices_prints_the_table_with_dates_and_sources(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "subrelay.toml"
    config.write_text('[prices."team/house-model"]\ninput = 0.5\noutput = 1.5\n')
    done = subprocess.run([sys.executable, "-m", "proxy", "prices", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "team       house-model" in done.stdout and "0.50" in done.stdout
    assert "codex      *" in done.stdout and "plan" in done.stdout
    assert "openai: 2026-06-30, https://openai.com/api/pricing" in done.stdout


# -- budgets on the request path --------------------------------------------------------------------


@pytest.fixture
def team_key():
    app = MockOpenAIServer()
    app.state = OpenAIMockState(delta_count=4)
    with ServerThread(app) as thread:
        yield app, thread


@pytest.fixture
def money_proxy(proxy_settings, mock_codex, team_env, team_key):
    app, thread = team_key

    def start(extra: str = "", template: str = PRICEY, **settings_changes):
        config = parse_config(tomllib.loads(extra + template.format(url=thread.url)))
        settings = replace(proxy_settings, auth_base_url=mock_codex.url, file=config,
                           env={**team_env, "TEAM_KEY": app.state.api_key}, **settings_changes)
        return ServerThread(create_app(settings))

    return start


def test_a_budget_of_one_dollar_admits_ten_ten_cent_requests_and_refuses_the_eleventh_naming_it(
        money_proxy, team_env):
    key = make_user(team_env, "ann", budgets={"month": "1.00"})
    with money_proxy() as proxy:
        answers = [post(f"{proxy.url}/v1/chat/completions", key, ASK) for _ in range(11)]
        assert [a.status_code for a in answers[:10]] == [200] * 10
        assert answers[9].headers["x-subrelay-budget"].startswith("month 100% reserved, $0.00 left")
        refused = answers[10]
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded" and error["budget"] == "month" and error["left_usd"] == "0.00"
        assert "'month' ($1.00 a month) is spent: $0.00 left" in error["message"]
        assert error["resets_at"] > time.time() and int(refused.headers["retry-after"]) > 0
        assert refused.headers["x-should-retry"] == "false"  # openai-python and anthropic do not retry it
        # The same refusal on the Messages door, in Anthropic's shape.
        claude = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as caught:
            claude.messages.create(model="team/pricey", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        assert "budget 'month'" in str(caught.value)
    report = _usage(team_env, "ann")
    assert report["totals"]["cost_micros"] == 1_000_000 and report["totals"]["cost_usd"] == "1.00"


def test_a_deployment_budget_on_the_team_key_holds_for_everyone_together(money_proxy, team_env):
    keys = [make_user(team_env, name) for name in ("bo", "cy")]
    with money_proxy('[budgets]\n"day@team" = "0.30"\n') as proxy:
        statuses = [post(f"{proxy.url}/v1/chat/completions", keys[i % 2], ASK).status_code for i in range(5)]
        over = post(f"{proxy.url}/v1/chat/completions", keys[0], ASK).json()["error"]
    assert statuses == [200, 200, 200, 429, 429]
    assert over["budget_owner"] == "team" and "The team's budget 'day@team' ($0.30 a day on team)" in over["message"]


def test_a_budget_spent_keeps_a_fallback_user_on_their_free_plan_instead_of_the_team_key(
        money_proxy, team_env, mock_codex):
    grace = make_user(team_env, "grace", fallback=True, budgets={"day@team": "0.10"})
    extra = 'fallback_at_percent = 90\n[fallbacks]\n"codex/gpt-5.4" = ["team/gpt-5.4"]\n'
    with money_proxy(extra) as proxy:
        device_login(proxy.url, grace, mock_codex, "grace@example.com")
        body = {"model": "codex/gpt-5.4", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        mock_codex.state.window_headers = {"x-codex-primary-used-percent": "95",
                                           "x-codex-primary-reset-after-seconds": "600"}
        routes = []
        for _ in range(3):
            answer = post(f"{proxy.url}/v1/chat/completions", grace, body)
            assert answer.status_code == 200, answer.text
            routes.append((answer.headers["x-subrelay-route"], answer.headers.get("x-subrelay-budget", "")))
    assert routes[0][0] == "codex/gpt-5.4"  # this answer reports 95%: the next one may switch
    assert routes[1][0] == "team/gpt-5.4"  # within the $0.10 allowance
    assert routes[2] == ("codex/gpt-5.4", "day@team spent; staying on codex/gpt-5.4")
    assert _usage(team_env, "grace")["totals"]["cost_usd"] == "0.10"


def test_a_paid_route_without_a_price_is_refused_under_a_budget_and_counted_as_unpriced_without(
        money_proxy, team_env):
    dee = make_user(team_env, "dee", budgets={"month": 5})
    eve = make_user(team_env, "eve")
    with money_proxy() as proxy:
        unknown = {**ASK, "model": "team/mystery"}
        refused = post(f"{proxy.url}/v1/chat/completions", dee, unknown)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "price_unknown"
        assert 'add [prices."team/mystery"]' in refused.json()["error"]["message"]
        assert post(f"{proxy.url}/v1/chat/completions", eve, unknown).status_code == 200
    assert _usage(team_env, "eve")["totals"]["unpriced"] == 1


def test_an_effort_above_the_users_ceiling_is_capped_and_said(money_proxy, team_env, team_key):
    app, _ = team_key
    fay = make_user(team_env, "fay", max_effort="medium")
    with money_proxy() as proxy:
        answer = post(f"{proxy.url}/v1/chat/completions", fay, {**ASK, "reasoning_effort": "xhigh"})
        assert answer.status_code == 200
        assert answer.headers["x-subrelay-effort"] == "medium; asked xhigh, capped for fay"
        assert app.state.requests[-1]["body"]["reasoning_effort"] == "medium"
        low = post(f"{proxy.url}/v1/chat/completions", fay, {**ASK, "reasoning_effort": "low"})
        assert "x-subrelay-effort" not in low.headers and app.state.requests[-1]["body"]["reasoning_effort"] == "low"


def test_an_admin_sets_a_members_monthly_budget_with_the_api_and_sees_spend_and_whats_left(
        money_proxy, team_env):
    from tests.team.conftest import ADMIN_KEY

    key = make_user(team_env, "gus")
    with money_proxy(admin_key=ADMIN_KEY) as proxy:
        admin = httpx.Client(base_url=proxy.url, headers={"x-admin-key": ADMIN_KEY})
        bad = admin.patch("/api/admin/users/gus", json={"budgets": {"month": "a lot"}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "budgets"
        changed = admin.patch("/api/admin/users/gus", json={"budgets": {"month": 0.5}, "max_effort": "high"})
        assert changed.status_code == 200 and changed.json()["budgets"] == {"month": "0.50"}
        for _ in range(2):
            assert post(f"{proxy.url}/v1/chat/completions", key, ASK).status_code == 200
        deadline = time.monotonic() + 10
        while True:  # the usage figures reach the store within a couple of seconds
            spend = admin.get("/api/admin/users/gus").json()["spend"]
            if spend[0]["spent_usd"] == "0.20" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert spend[0] | {"resets_at": 0} == {"budget": "month", "describe": "$0.50 a month", "budget_usd": "0.50",
                                              "spent_usd": "0.20", "left_usd": "0.30", "spent_percent": 40.0,
                                              "resets_at": 0}
        usage = admin.get("/api/admin/usage", params={"group_by": "user,provider"}).json()
        assert usage["data"][0]["cost_usd"] == "0.20" and usage["data"][0]["provider"] == "team"


def test_count_tokens_is_free_and_never_meets_a_budget(money_proxy, team_env):
    key = make_user(team_env, "hal", budgets={"month": "0.01"})
    with money_proxy() as proxy:
        counted = [post(f"{proxy.url}/v1/messages/count_tokens", key,
                        {"model": "team/pricey", "messages": [{"role": "user", "content": "hi"}]})
                   for _ in range(3)]
    assert [c.status_code for c in counted] == [200] * 3


def _usage(env: dict, user: str) -> dict:
    import asyncio

    from proxy.team.usage_report import usage_report

    async def read():
        team = open_team(env)
        try:
            return await usage_report(team.store, user=user)
        finally:
            await team.store.close()

    deadline = time.monotonic() + 10
    while True:  # the server flushes usage every couple of seconds (and at shutdown)
        report = asyncio.run(read())
        if report["totals"]["requests"] or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


# -- concurrency: a deployment cap per team key, a member's own cap, queue or refuse ---------------------

STREAM = {**ASK, "stream": True}
KEY_CAP = PRICEY.replace('api_key_env = "TEAM_KEY"', 'api_key_env = "TEAM_KEY"\nmax_concurrent = 1')


def _open_stream(url: str, key: str) -> tuple[httpx.Client, httpx.Response]:
    """A streamed answer whose head has arrived: it holds its slots until read to the end."""
    client = httpx.Client(timeout=60)
    response = client.send(client.build_request("POST", f"{url}/v1/chat/completions", json=STREAM,
                                                headers={"authorization": f"Bearer {key}"}), stream=True)
    return client, response


def test_a_team_keys_stream_cap_refuses_the_next_member_until_a_stream_ends(money_proxy, team_env, team_key):
    team_key[0].state.inter_delta_delay = 0.2
    ann, bob = make_user(team_env, "ann"), make_user(team_env, "bob")
    with money_proxy(template=KEY_CAP) as proxy:  # one open stream on the team key, for the whole team
        client, first = _open_stream(proxy.url, ann)
        assert first.status_code == 200
        busy = post(f"{proxy.url}/v1/chat/completions", bob, ASK)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "upstream_key_busy"
        assert "max_concurrent=1" in busy.json()["error"]["message"]
        first.read()
        client.close()
        assert post(f"{proxy.url}/v1/chat/completions", bob, ASK).status_code == 200


def test_with_when_full_queue_the_next_request_waits_for_the_slot_instead_of_a_429(money_proxy, team_env, team_key):
    from concurrent.futures import ThreadPoolExecutor

    team_key[0].state.inter_delta_delay = 0.2
    ann, bob = make_user(team_env, "ann"), make_user(team_env, "bob")
    with money_proxy('[fairness]\nwhen_full = "queue"\nqueue_seconds = 30\n', template=KEY_CAP) as proxy:
        client, first = _open_stream(proxy.url, ann)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(post, f"{proxy.url}/v1/chat/completions", bob, ASK)
            time.sleep(0.3)
            assert not waiting.done()  # queued behind ann's open stream
            first.read()
            client.close()
            assert waiting.result(timeout=30).status_code == 200


def test_a_members_own_concurrency_cap_set_by_the_cli_holds(money_proxy, team_env, team_key):
    import subprocess
    import sys

    team_key[0].state.inter_delta_delay = 0.2
    cy = make_user(team_env, "cy")
    done = subprocess.run([sys.executable, "-m", "proxy", "users", "set", "cy", "--max-concurrent", "1"],
                          env={**team_env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "max concurrent 1" in done.stdout, done.stderr
    with money_proxy() as proxy:
        client, first = _open_stream(proxy.url, cy)
        second = post(f"{proxy.url}/v1/chat/completions", cy, ASK)
        assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_concurrent_requests"
        first.read()
        client.close()
