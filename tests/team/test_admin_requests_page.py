"""The admin page's requests view and audit log in a real headless Chromium: the last requests with their
routing decision, a filter, a request's detail, and a disable made on the page appearing in the audit log
as the page's. A screenshot is kept in tests/artifacts/admin-requests.png."""

from __future__ import annotations

import orjson
import pytest

from tests.browser import Browser, browser, chromium_or_skip  # noqa: F401 - browser: the shared page fixture
from tests.team.conftest import ADMIN_KEY, ask
from tests.team.test_admin_page import _full_page_screenshot

TURN = [{"role": "user", "content": "hi"}]


def test_the_requests_view_shows_the_routing_decision_filters_and_the_audit_log(browser, ledger_team):
    base, admin, keys, upstream = ledger_team
    assert ask(base, keys["alice"], TURN).status_code == 200
    upstream.state.script.append({"status": 429, "body": {"error": {"message": "slow down", "type": "rate_limit"}}})
    assert ask(base, keys["alice"], TURN).status_code == 200
    assert ask(base, keys["bob"], TURN, "claude-cli/2.1.0 (external, cli)").status_code == 200

    browser.goto(f"{base}/admin")
    browser.wait_for("!document.getElementById('sign-in').hidden")
    browser.evaluate(f"document.getElementById('admin-key').value = {orjson.dumps(ADMIN_KEY).decode()};"
                     "document.getElementById('sign-in').requestSubmit()")
    browser.wait_for("document.querySelectorAll('#requests tbody tr').length === 3")
    rows = browser.evaluate("[...document.querySelectorAll('#requests tbody tr')].map(r => r.innerText)")
    assert rows[0].startswith(rows[0][:19]) and "bob" in rows[0] and "first route" in rows[0]
    assert "alice" in rows[1] and "backup/gpt-x" in rows[1] and "fallback primary/gpt-x (429) -> backup/gpt-x" in rows[1]

    browser.evaluate("document.querySelectorAll('#requests tbody tr')[1].click()")
    detail = browser.wait_for("!document.getElementById('request-detail').hidden && "
                              "document.getElementById('request-detail').innerText")
    assert "routing decision\nfallback primary/gpt-x (429) -> backup/gpt-x" in detail
    assert "resolved model\ngpt-x" in detail and "provider\nbackup" in detail and "OpenAI/Python 2.8.0" in detail

    browser.evaluate("document.getElementById('filter-person').value = 'alice';"
                     "document.getElementById('request-filters').requestSubmit()")
    browser.wait_for("document.querySelectorAll('#requests tbody tr').length === 2")
    assert all("alice" in row for row in browser.evaluate(
        "[...document.querySelectorAll('#requests tbody tr')].map(r => r.innerText)"))

    browser.evaluate("document.querySelector('tr[data-user=bob] button[data-action=toggle]').click()")
    browser.wait_for("document.querySelector('#audit tr[data-action=\"user.disable\"]') !== null")
    audit = browser.evaluate("document.querySelector('#audit tr[data-action=\"user.disable\"]').innerText")
    assert "admin key from 127.0.0.1" in audit and "\tpage\t" in audit and "bob" in audit
    assert ADMIN_KEY not in browser.evaluate("document.body.innerHTML")
    browser.evaluate("document.querySelectorAll('#requests tbody tr')[0].click()")
    assert _full_page_screenshot(browser, "admin-requests.png").stat().st_size > 5000
