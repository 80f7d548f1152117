"""The Codex CLI's view of the account's catalogue (``GET /v1/models?client_version=``): entries the
CLI can use as they are, and none that would make it run without its agent prompt."""

from __future__ import annotations

import httpx

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread


def test_entries_keep_the_backends_prompt_and_prompt_less_ones_are_left_out(proxy_url, mock_codex):
    models = httpx.get(f"{proxy_url}/models", params={"client_version": "0.171.0"}).json()["models"]
    by_slug = {entry["slug"]: entry for entry in models}
    assert by_slug["nova-1"]["model_messages"]["instructions_template"].startswith("You are Codex on nova-1")
    # the retired entry has no prompt: listed with base_instructions "" Codex would send no prompt at all
    assert "gpt-5.1-codex" not in by_slug


def test_without_a_login_catalogue_the_cli_keeps_its_own_list(proxy_settings, mock_codex):
    mock_codex.state.catalog_down = True
    with ServerThread(create_app(proxy_settings)) as proxy:
        answer = httpx.get(f"{proxy.url}/v1/models", params={"client_version": "0.171.0"})
    assert answer.status_code == 200 and answer.json() == {"models": []}
