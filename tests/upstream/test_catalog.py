"""The Codex model catalogue follows the logged-in account (live, ETag-aware, with a fallback)."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
from openai import OpenAI

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread


def _listed(url: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]


def _wait_for_live(url: str) -> list[str]:
    deadline = time.monotonic() + 10
    while "nova-1" not in (ids := _listed(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ids


def test_the_live_catalogue_is_listed_and_routed(proxy_settings, mock_codex):
    with ServerThread(create_app(proxy_settings)) as proxy:
        ids = _wait_for_live(proxy.url)
        assert ids[:6] == ["gpt-6-astra", "gpt-5.6-sol", "gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "nova-1"]  # by priority
        assert "gpt-5.1-codex" not in ids  # hidden by the backend
        client = OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.with_raw_response.create(model="nova-1", messages=[{"role": "user", "content": "hi"}])
        assert answer.headers["x-subrelay-route"] == "codex/nova-1"  # routed only because the account lists it
        cli_view = httpx.get(f"{proxy.url}/v1/models", params={"client_version": "0.169.0"}).json()
        assert [m["slug"] for m in cli_view["models"]][0] == "gpt-6-astra"  # the shape the Codex CLI reads
    assert mock_codex.state.catalog_not_modified >= 1  # the CLI's read was answered 304 from the ETag


def test_without_a_catalogue_the_shipped_list_is_used(proxy_settings, mock_codex):
    mock_codex.state.catalog_down = True
    with ServerThread(create_app(replace(proxy_settings, codex_catalog_seconds=0.05))) as proxy:
        deadline = time.monotonic() + 5
        while mock_codex.state.catalog_calls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ids = _listed(proxy.url)
        assert "gpt-6-astra" in ids and "nova-1" not in ids  # the shipped list
        mock_codex.state.catalog_down = False
        assert "nova-1" in _wait_for_live(proxy.url)  # and the live one once it can be read


def test_a_login_made_after_start_up_lists_its_models_within_seconds(proxy_settings, mock_codex, tmp_path):
    """No login at start: the shipped list. `subrelay login` then (the login file appears): the account's
    own catalogue is listed within the poll (seconds), not after SUBRELAY_CODEX_CATALOG_SECONDS (15 min)."""
    from tests.conftest import write_auth_file

    later = str(tmp_path / "later" / "auth.json")
    settings = replace(proxy_settings, codex_auth_path=later)  # the default 900 s interval
    with ServerThread(create_app(settings)) as proxy:
        assert "nova-1" not in _listed(proxy.url)
        (tmp_path / "later").mkdir()
        write_auth_file(later, mock_codex.state.auth_file())
        assert "nova-1" in _wait_for_live(proxy.url)
