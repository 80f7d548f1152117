"""Team mode's promises under the sequences a curious member, an attacker or a careless operator
would try (issue 25): members see only their own, limits hold for the model actually reached, a
cancelled stream is charged for what it delivered, shared bounded resources are fair."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from proxy.account.api import PREFIX
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import device_login, make_user


@pytest.fixture
def team_env(state_dir):
    return {"SUBRELAY_STATE_DIR": str(state_dir), "SUBRELAY_METRICS_PER_USER": "1"}


@pytest.fixture
def guarded_proxy(proxy_settings, mock_codex, team_env):
    """A team server with an admin key, as an operator runs it."""
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env=team_env, admin_key=ADMIN_KEY)
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def _get(url: str, key: str) -> httpx.Response:
    return httpx.get(url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_members_key_opens_only_their_own_never_the_operators_surfaces(guarded_proxy, mock_codex, team_env):
    alice = make_user(team_env, "alice")
    mock_codex.state.account_models["acc-alice-mock"] = ["gpt-5.4", "gpt-5.4-mini"]  # her plan has fewer models
    assert _get(f"{guarded_proxy}{PREFIX}/models", alice).json()["models"] == []  # no login: no list, not the owner's
    device_login(guarded_proxy, alice, mock_codex, "alice@example.com")
    chat = httpx.post(f"{guarded_proxy}/v1/chat/completions", json={"model": "gpt-5.4", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"authorization": f"Bearer {alice}"}, timeout=30)
    assert chat.status_code == 200

    for path in ("/metrics", "/api/llm/providers"):
        refused = _get(f"{guarded_proxy}{path}", alice)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "admin_key_required"
        assert "auth.json" not in refused.text and "alice" not in refused.text
        assert _get(f"{guarded_proxy}{path}", ADMIN_KEY).status_code == 200  # the operator still sees them
    status = _get(f"{guarded_proxy}{PREFIX}/status", alice).json()
    assert status["user"] == "alice" and status["account_email"] == "alice@example.com"
    own = _get(f"{guarded_proxy}{PREFIX}/models", alice).json()["models"]
    assert sorted(own) == ["gpt-5.4", "gpt-5.4-mini"]  # her own plan's catalogue, read with her login
    owners = _get(f"{guarded_proxy}{PREFIX}/models", ADMIN_KEY).json()["models"]
    assert "gpt-5.5" in owners  # the server's list is another thing, and only the admin's


def test_a_per_model_limit_and_the_allow_list_hold_for_the_model_reached_whatever_its_name(
        proxy_settings, mock_codex, team_env):
    from proxy.config.file import parse_config

    file = parse_config({"aliases": {"fast": "codex/gpt-5.5", "claude-opus-4-8[1m]": "codex/gpt-5.5"}})
    settings = replace(proxy_settings, auth_base_url=mock_codex.url, env=team_env, file=file)
    key = make_user(team_env, "lim", model_limits={"gpt-5.5*": {"rpm": 2}})
    narrow = make_user(team_env, "nar", models=["gpt-5.4*"])
    with ServerThread(create_app(settings)) as proxy:
        device_login(proxy.url, key, mock_codex, "lim@example.com")
        device_login(proxy.url, narrow, mock_codex, "nar@example.com")
        names = ["gpt-5.5", "codex/gpt-5.5", "fast", "claude-opus-4-8[1m]", "gpt-5.5", "fast", "codex/gpt-5.5"]
        codes = [httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {key}"},
                            json={"model": name, "messages": [{"role": "user", "content": "hi"}]}).status_code
                 for name in names]
        print(f"\nrequests that reached gpt-5.5 under rpm=2: {codes.count(200)} of {len(names)}")
        assert codes.count(200) == 2 and codes.count(429) == 5, codes
        other = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {key}"},
                           json={"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]})
        assert other.status_code == 200  # another model is not held by that limit

        for name in ("gpt-5.5", "fast", "claude-opus-4-8[1m]", "codex/gpt-5.5"):  # may use gpt-5.4* only
            refused = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30,
                                 headers={"authorization": f"Bearer {narrow}"},
                                 json={"model": name, "messages": [{"role": "user", "content": "hi"}]})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed", name
        allowed = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {narrow}"},
                             json={"model": "codex/gpt-5.4", "messages": [{"role": "user", "content": "hi"}]})
        assert allowed.status_code == 200, allowed.text
