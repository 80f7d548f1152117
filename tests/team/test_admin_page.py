"""The admin page in a real headless Chromium: it asks for the admin key, shows two users with their login
state, plan windows as bars and usage per day as a chart, and its buttons disable and rotate. A screenshot
is kept in tests/artifacts/admin-page.png."""

from __future__ import annotations

import datetime
import time

import httpx
import orjson
import pytest

from proxy.state.team import StoredLogin, UsageRow
from proxy.team.secretbox import SecretBox, load_keys
from tests.browser import Browser, browser, chromium_or_skip  # noqa: F401 - browser: the shared page fixture
from tests.team.conftest import ADMIN_KEY, in_store


def _team_of_two(proxy, state_dir) -> None:
    api = httpx.Client(base_url=proxy.url, headers={"x-admin-key": ADMIN_KEY}, timeout=10)
    assert api.post("/api/admin/users", json={"name": "alice", "rpm": 60, "daily_tokens": 2_000_000,
                                              "fallback": True}).status_code == 201
    assert api.post("/api/admin/users", json={"name": "bob", "models": ["claude-*"], "tpm": 50_000}).status_code == 201
    today = datetime.datetime.now(datetime.UTC).date()
    day = lambda back: (today - datetime.timedelta(days=back)).isoformat()

    async def fill(store):
        sealed = SecretBox(load_keys({}, str(state_dir))).seal(b'{"tokens": {}}', context="alice")
        await store.put_login("alice", StoredLogin(sealed, 1, account_id="acc-alice", email="alice@example.com",
                                                   plan_type="pro"), expected_version=None)
        await store.put_plan_windows("account:acc-alice", {
            "primary_used_percent": 42.0, "primary_reset_at": time.time() + 3 * 3600,
            "secondary_used_percent": 96.5, "secondary_reset_at": time.time() + 4 * 86400})
        person = {u.name: u.person for u in await store.list_users()}  # usage is kept per person
        await store.add_usage([
            UsageRow(person["alice"], day(0), "gpt-5.5", "codex", requests=12, input_tokens=90_000, output_tokens=6_000),
            UsageRow(person["bob"], day(0), "claude-sonnet-4-5", "anthropic", requests=5, input_tokens=30_000,
                     output_tokens=2_000),
            UsageRow(person["alice"], day(1), "gpt-5.5", "codex", requests=20, input_tokens=150_000, output_tokens=9_000),
            UsageRow(person["alice"], day(3), "gpt-5.5", "codex", requests=4, input_tokens=20_000, output_tokens=1_000),
            UsageRow(person["bob"], day(3), "claude-sonnet-4-5", "anthropic", requests=9, input_tokens=60_000,
                     output_tokens=5_000),
            UsageRow(person["alice"], day(30), "gpt-5.5", "codex", requests=1, input_tokens=999_999),  # beyond the chart
        ])

    in_store(state_dir, fill)


def _full_page_screenshot(browser, name: str):
    """The whole page (users and the usage chart), not only the window's first screen."""
    import base64

    size = browser.command("Page.getLayoutMetrics")["cssContentSize"]
    data = browser.command("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                           clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})["data"]
    path = browser.screenshot(name)  # where the page tests keep theirs; then the whole page over it
    path.write_bytes(base64.b64decode(data))
    return path


def test_the_admin_page_shows_two_users_and_manages_them(browser, admin_proxy, state_dir):
    _team_of_two(admin_proxy, state_dir)
    browser.goto(f"{admin_proxy.url}/admin")
    browser.wait_for("!document.getElementById('sign-in').hidden")
    assert browser.evaluate("document.getElementById('main').hidden")

    browser.evaluate("document.getElementById('admin-key').value = 'not-the-key';"
                     "document.getElementById('sign-in').requestSubmit()")
    assert "key" in browser.wait_for("!document.getElementById('error').hidden && "
                                     "document.getElementById('error').innerText")
    assert browser.evaluate("document.getElementById('main').hidden && !document.getElementById('sign-in').hidden")
    browser.evaluate(f"document.getElementById('admin-key').value = {orjson.dumps(ADMIN_KEY).decode()};"
                     "document.getElementById('sign-in').requestSubmit()")
    browser.wait_for("document.querySelectorAll('#users tbody tr').length === 2")

    rows = browser.evaluate("[...document.querySelectorAll('#users tbody tr')].map(r => r.innerText)")
    assert rows[0].startswith("alice") and "alice@example.com (pro)" in rows[0] and "60 req/min" in rows[0]
    assert rows[1].startswith("bob") and "not logged in" in rows[1] and "models claude-*" in rows[1]
    bars = browser.evaluate("[...document.querySelectorAll('.window')].map(w => "
                            "[w.dataset.window, w.querySelector('.bar > div').style.width, w.querySelector('.bar').className])")
    assert bars == [["primary", "42%", "bar"], ["secondary", "96.5%", "bar full"]]
    labels = browser.evaluate("[...document.querySelectorAll('.window')].map(w => w.firstChild.textContent)")
    assert labels[0].startswith("5-hour: 42% used") and labels[1].startswith("weekly: ")  # the account page's words
    days = browser.evaluate("[...document.querySelectorAll('#usage-chart .day')].map(d => [d.dataset.day, +d.dataset.tokens])")
    today = datetime.datetime.now(datetime.UTC).date()
    assert len(days) == 14 and days[-1] == [today.isoformat(), 128_000]
    assert dict(days)[(today - datetime.timedelta(days=1)).isoformat()] == 159_000
    assert sum(tokens for _, tokens in days) == 128_000 + 159_000 + 86_000
    assert "alice" in browser.evaluate("document.getElementById('usage-legend').innerText")
    assert ADMIN_KEY not in browser.evaluate("document.body.innerHTML")

    api = httpx.Client(base_url=admin_proxy.url, headers={"x-admin-key": ADMIN_KEY}, timeout=10)
    browser.evaluate("document.querySelector('tr[data-user=bob] button[data-action=toggle]').click()")
    browser.wait_for("document.querySelector('tr[data-user=bob] td.disabled') !== null")
    assert api.get("/api/admin/users/bob").json()["disabled"] is True

    before = api.get("/api/admin/users/alice").json()["key_id"]
    browser.evaluate("document.querySelector('tr[data-user=alice] button[data-action=rotate]').click()")
    new_key = browser.wait_for("!document.getElementById('new-key').hidden && "
                               "document.getElementById('new-key-value').innerText")
    assert new_key.startswith("srk_")
    assert api.get("/api/admin/users/alice").json()["key_id"] not in (before, None)
    assert browser.evaluate("!!document.getElementById('new-key-copy')")  # a copy button beside the key
    shot = _full_page_screenshot(browser, "admin-page.png")
    assert shot.stat().st_size > 5000
    browser.evaluate("window.confirm = () => true;"
                     "document.querySelector('tr[data-user=alice] button[data-action=remove]').click()")
    browser.wait_for("document.querySelectorAll('#users tbody tr').length === 1")
    assert browser.evaluate("document.getElementById('new-key').hidden")  # the removed user's key is not left up

    browser.goto(f"{admin_proxy.url}/admin")  # the key is kept for this tab: no second prompt
    browser.wait_for("document.querySelectorAll('#users tbody tr').length === 1")
    assert browser.evaluate("document.getElementById('sign-in').hidden")


def test_the_admin_page_shows_money_with_the_budget_as_a_bar_and_sets_a_budget_and_a_cap(
        browser, admin_proxy, state_dir):
    _team_of_two(admin_proxy, state_dir)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()

    async def spend(store):
        bob = (await store.get_user("bob")).person
        await store.add_usage([UsageRow(bob, today, "claude-sonnet-4-5", "anthropic", requests=1,
                                        input_tokens=10, cost_micros=1_250_000)])

    in_store(state_dir, spend)
    api = httpx.Client(base_url=admin_proxy.url, headers={"x-admin-key": ADMIN_KEY}, timeout=10)
    assert api.patch("/api/admin/users/bob", json={"budgets": {"month": 5}}).status_code == 200
    browser.goto(f"{admin_proxy.url}/admin")
    browser.evaluate(f"sessionStorage.setItem('subrelay-admin-key', {orjson.dumps(ADMIN_KEY).decode()})")
    browser.goto(f"{admin_proxy.url}/admin")
    browser.wait_for("document.querySelectorAll('#users tbody tr').length === 2")
    money = browser.evaluate("[...document.querySelectorAll('tr[data-user=bob] .budget')].map(b => "
                             "[b.innerText, b.querySelector('.bar > div').style.width])")
    assert money == [["month: $1.25 of $5.00, $3.75 left", "25%"]]
    assert "no budget" in browser.evaluate("document.querySelector('tr[data-user=alice]').innerText")
    cost = browser.evaluate(f"document.querySelector('#usage-chart .day[data-day=\"{today}\"]').dataset.cost")
    assert cost == "1250000"
    assert "$1.25" in browser.evaluate(f"document.querySelector('#usage-chart .day[data-day=\"{today}\"]').innerText")

    browser.evaluate("document.getElementById('money-name').value = 'alice';"
                     "document.getElementById('money-budget').value = '20';"
                     "document.getElementById('money-cap').value = '3';"
                     "document.getElementById('set-money').requestSubmit()")
    browser.wait_for("document.querySelector('tr[data-user=alice] .budget') !== null")
    alice = api.get("/api/admin/users/alice").json()
    assert alice["budgets"] == {"month": "20.00"} and alice["max_concurrent"] == 3
    assert "3 in flight" in browser.evaluate("document.querySelector('tr[data-user=alice]').innerText")
    _full_page_screenshot(browser, "admin-page-money.png")
