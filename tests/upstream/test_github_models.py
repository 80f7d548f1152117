"""GitHub Models as a provider kind: ``GITHUB_TOKEN`` (a fine-grained PAT with ``models:read``) and
``github/<publisher>/<model>`` names reach https://models.github.ai/inference (respx)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest
import respx

from proxy.config.settings import Settings
from proxy.credentials.api_keys import key_problem
from proxy.server.app import create_app

TOKEN = "github_pat_11ABCDEFG0" + "a1B2c3D4e5F6g7H8i9J0" * 4
INFERENCE = "https://models.github.ai/inference/chat/completions"
COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "openai/gpt-4.1",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from GitHub Models"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


@asynccontextmanager
async def proxy(tmp_path, token: str):
    app = create_app(Settings(codex_auth_path=str(tmp_path / "none.json"), upstream_transport="httpx",
                              env={"GITHUB_TOKEN": token}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            yield client


@respx.mock
async def test_github_models_are_reached_with_the_token(tmp_path):
    route = respx.post(INFERENCE).mock(return_value=httpx.Response(200, json=COMPLETION))
    async with proxy(tmp_path, TOKEN) as client:
        listed = (await client.get("/v1/models")).json()["data"]
        response = await client.post("/v1/chat/completions", json={
            "model": "github/openai/gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-subrelay-route"] == "github/openai/gpt-4.1"
    assert response.json()["choices"][0]["message"]["content"] == "hi from GitHub Models"
    sent = route.calls[0].request
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert httpx.Response(200, content=sent.content).json()["model"] == "openai/gpt-4.1"
    assert any(entry["id"].endswith("openai/gpt-4.1") and entry["owned_by"] == "github" for entry in listed)


@pytest.mark.parametrize("token", ["github_pat_" + "Zz9" * 20, "ghp_" + "Ab1" * 12, "ghs_" + "Cd2" * 12])
def test_github_token_kinds_pass_the_key_check(token):
    assert key_problem(token, "github") is None


def test_a_wrong_key_in_github_token_is_named_at_start_up():
    assert "OpenAI key" in key_problem("sk-proj-" + "Ab1Cd2" * 8, "github")
    assert "github_pat_" in key_problem("abcdefghijklmnopqrstuvwxyz012345", "github")
