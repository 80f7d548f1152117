"""Team mode on the plain endpoints: a user's limits and money budgets hold for embeddings as for chat
(reserved before sending at the request's input tokens, settled at the reported usage), and each request
lands in the ledger as its own door, with its tokens and never its content."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import httpx
import pytest

from proxy.config.file import parse_config
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState
from tests.team.conftest import ADMIN_KEY
from tests.team.test_request_path import make_user, team_env  # noqa: F401 (a fixture)

# "team/emb" costs $0.10 an input token: "abcd" is 2 tokens (4 characters / 4 + 1, what subrelay reserves
# and what the mock reports), so each request is reserved and settled at exactly $0.20.
CONFIG = '''
[providers.team]
kind = "custom"
base_url = "{url}/v1"
api_key_env = "TEAM_KEY"
models = ["emb"]
[prices."team/emb"]
input = 100000
output = 0
'''
EMBED = {"model": "team/emb", "input": "abcd"}


@pytest.fixture
def plain_team(proxy_settings, team_env, tmp_path, monkeypatch):
    upstream = MockOpenAIServer()
    upstream.state = OpenAIMockState()
    monkeypatch.setenv("HOME", str(tmp_path))
    with ServerThread(upstream) as mock:
        settings = replace(proxy_settings, admin_key=ADMIN_KEY, file=parse_config(tomllib.loads(CONFIG.format(url=mock.url))),
                           env={**team_env, "TEAM_KEY": upstream.state.api_key})
        with ServerThread(create_app(settings)) as proxy:
            yield proxy.url, upstream


def embed(base: str, key: str, body: dict = EMBED) -> httpx.Response:
    return httpx.post(f"{base}/v1/embeddings", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_budget_of_fifty_cents_admits_two_twenty_cent_embeddings_and_refuses_the_third(plain_team, team_env):
    base, upstream = plain_team
    key = make_user(team_env, "ann", budgets={"month": "0.50"})
    answers = [embed(base, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
    assert answers[1].headers["x-subrelay-budget"].startswith("month 80% reserved, $0.10 left")
    error = answers[2].json()["error"]
    assert error["code"] == "budget_exceeded" and error["budget"] == "month" and error["left_usd"] == "0.10"
    assert len(upstream.state.requests) == 2  # the refused one never reached the upstream


def test_a_users_request_limit_holds_for_embeddings_and_the_key_is_required(plain_team, team_env):
    base, upstream = plain_team
    key = make_user(team_env, "bo", rpm=1)
    assert embed(base, key).status_code == 200
    over = embed(base, key)
    assert over.status_code == 429 and over.json()["error"]["code"] == "user_rate_limit_exceeded"
    assert httpx.post(f"{base}/v1/embeddings", json=EMBED, timeout=30).status_code == 401  # team mode: a key
    assert len(upstream.state.requests) == 1


def test_an_allow_list_without_the_embedding_model_refuses_it(plain_team, team_env):
    base, _ = plain_team
    key = make_user(team_env, "cy", models=["team/chat-*"])
    refused = embed(base, key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"


def test_each_plain_request_is_a_ledger_entry_with_its_door_and_tokens_and_no_content(plain_team, team_env):
    base, _ = plain_team
    key = make_user(team_env, "di")
    assert embed(base, key, {"model": "team/emb", "input": ["tangerine", "abcd"]}).status_code == 200
    assert httpx.post(f"{base}/v1/moderations", json={"model": "team/emb", "input": "abcd"}, timeout=30,
                      headers={"authorization": f"Bearer {key}"}).status_code == 200
    admin = httpx.Client(base_url=base, headers={"x-admin-key": ADMIN_KEY}, timeout=15)
    entries = admin.get("/api/admin/requests").json()["data"]
    moderation, embedding = entries[:2]
    assert (embedding["door"], embedding["person"], embedding["route"]) == ("embeddings", "di", "team/emb")
    assert (embedding["status"], embedding["input_tokens"], embedding["output_tokens"]) == (200, 5, 0)
    assert moderation["door"] == "moderations" and moderation["status"] == 200
    # The mock's moderation answer has no usage (as OpenAI's has none): the estimate stands, and says so.
    assert (moderation["input_tokens"], moderation["decision"]) == (2, "usage estimated: the upstream reported none")
    assert "tangerine" not in str(entries)
