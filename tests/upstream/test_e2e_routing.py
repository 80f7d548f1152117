"""Routing end to end: a Codex login plus an OpenRouter-style key behind one endpoint, with
aliases, fallbacks before the first byte (never after), cool-downs and byte-for-byte relaying."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import replace

import httpx
import pytest
from openai import OpenAI

from proxy.server.app import create_app
from proxy.config.settings import Settings
from proxy.config.file import parse_config
from tests.mock_upstream import ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState, completion_chunks

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def _openrouter_server():
    app = MockOpenAIServer()
    with ServerThread(app) as thread:
        yield app, thread


@pytest.fixture
def openrouter(_openrouter_server):
    app, thread = _openrouter_server
    app.state = OpenAIMockState()
    return app, thread


def routing_settings(mock_codex, auth_path, openrouter, extra: str = "", env: dict | None = None) -> Settings:
    app, thread = openrouter
    config = parse_config(tomllib.loads(f'''
[providers.openrouter]
kind = "openrouter"
base_url = "{thread.url}/api/v1"
models = ["openai/gpt-5.4"]

[aliases]
fast = "codex/gpt-5.4-mini"

[fallbacks]
"codex/gpt-5.4" = ["codex/gpt-5.4-mini", "openrouter/openai/gpt-5.4"]
"gpt-5.4" = ["openrouter/openai/gpt-5.4"]
{extra}
'''))
    return Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                    codex_auth_path=auth_path, file=config, env={"OPENROUTER_API_KEY": app.state.api_key, **(env or {})})


@pytest.fixture
def proxy(mock_codex, auth_path, openrouter):
    with ServerThread(create_app(routing_settings(mock_codex, auth_path, openrouter))) as thread:
        yield f"{thread.url}/v1"


def sdk(url: str) -> OpenAI:
    return OpenAI(base_url=url, api_key="unused", max_retries=0)


def test_bare_alias_and_explicit_models_reach_their_providers(proxy, mock_codex, openrouter):
    client = sdk(proxy)
    bare = client.chat.completions.with_raw_response.create(model="gpt-5.4", messages=USER)
    alias = client.chat.completions.with_raw_response.create(model="fast", messages=USER)
    explicit = client.chat.completions.with_raw_response.create(model="openrouter/openai/gpt-5.4", messages=USER)
    assert bare.headers["x-subrelay-route"] == "codex/gpt-5.4"
    assert alias.headers["x-subrelay-route"] == "codex/gpt-5.4-mini"
    assert explicit.headers["x-subrelay-route"] == "openrouter/openai/gpt-5.4"
    assert [r["body"]["model"] for r in mock_codex.state.requests] == ["gpt-5.4", "gpt-5.4-mini"]
    forwarded = openrouter[0].state.requests[0]
    assert forwarded["body"]["model"] == "openai/gpt-5.4" and forwarded["path"] == "/api/v1/chat/completions"
    assert forwarded["headers"]["x-title"] == "subrelay"
    assert explicit.parse().choices[0].message.content == "hello hello hello "


def test_models_lists_exactly_what_is_routable_with_owners(proxy):
    listed = {m.id: m.owned_by for m in sdk(proxy).models.list()}
    assert listed["gpt-5.4"] == "codex" and listed["fast"] == "codex"
    assert listed["openrouter/openai/gpt-5.4"] == "openrouter"
    assert not any(owner in ("openai", "xai", "gemini", "groq", "perplexity") for owner in listed.values())


def test_codex_429_falls_back_before_the_first_byte(proxy, mock_codex, openrouter):
    mock_codex.state.script = [
        {"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 600}}},
    ]
    response = sdk(proxy).chat.completions.with_raw_response.create(model="codex/gpt-5.4", messages=USER, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert response.headers["x-subrelay-route"] == "openrouter/openai/gpt-5.4"
    assert text == "hello hello hello "
    # A plan's usage limit covers every model of the account: gpt-5.4-mini on it is skipped too.
    assert [r["body"]["model"] for r in mock_codex.state.requests] == ["gpt-5.4"]


@pytest.mark.parametrize("failure", [
    {"status": 500, "body": {"detail": "boom"}},
    {"status": 503, "body": {"detail": "overloaded"}},
])
def test_5xx_falls_back(proxy, mock_codex, failure):
    mock_codex.state.script = [failure]
    response = sdk(proxy).chat.completions.with_raw_response.create(model="codex/gpt-5.4", messages=USER)
    assert response.headers["x-subrelay-route"] == "codex/gpt-5.4-mini"


def test_connection_failure_and_timeout_fall_back(mock_codex, auth_path, openrouter):
    settings = routing_settings(mock_codex, auth_path, openrouter)
    unreachable = replace(settings, codex_base_url="http://127.0.0.1:9/backend-api/codex")
    with ServerThread(create_app(unreachable)) as thread:
        response = sdk(f"{thread.url}/v1").chat.completions.with_raw_response.create(model="gpt-5.4", messages=USER)
    assert response.headers["x-subrelay-route"] == "openrouter/openai/gpt-5.4"


def test_no_fallback_after_the_stream_started(proxy, mock_codex, openrouter):
    body = {"model": "codex/gpt-5.4", "stream": True, "messages": [{"role": "user", "content": "x [[deltas:3]] [[truncate]]"}]}
    with httpx.stream("POST", f"{proxy}/chat/completions", json=body, timeout=10) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["x-subrelay-route"] == "codex/gpt-5.4"
    assert '"error"' in lines[-1]  # the client is told the stream broke…
    assert openrouter[0].state.requests == []  # …and no second answer was started elsewhere


def test_a_throttled_target_is_skipped_until_its_retry_after_passes(proxy, mock_codex):
    mock_codex.state.script = [{"status": 429, "body": {"error": {"message": "slow down"}}, "headers": {"Retry-After": "30"}}]
    client = sdk(proxy)
    first = client.chat.completions.with_raw_response.create(model="codex/gpt-5.4", messages=USER)
    second = client.chat.completions.with_raw_response.create(model="codex/gpt-5.4", messages=USER)
    assert first.headers["x-subrelay-route"] == second.headers["x-subrelay-route"] == "codex/gpt-5.4-mini"
    assert [r["body"]["model"] for r in mock_codex.state.requests] == ["gpt-5.4", "gpt-5.4-mini", "gpt-5.4-mini"]


def test_without_fallbacks_the_limit_reaches_the_client_with_retry_after(proxy, mock_codex):
    mock_codex.state.script = [{"status": 429, "body": {"error": {"type": "usage_limit_reached", "message": "limit",
                                                                  "plan_type": "pro", "resets_in_seconds": 120}}}]
    response = httpx.post(f"{proxy}/chat/completions", json={"model": "fast", "messages": USER})
    assert response.status_code == 429 and response.headers["retry-after"] == "120"
    assert "ChatGPT Pro plan" in response.json()["error"]["message"]


def test_passthrough_stream_is_relayed_byte_for_byte(proxy, openrouter):
    body = {"model": "openrouter/openai/gpt-5.4", "stream": True, "messages": USER, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{proxy}/chat/completions", json=body) as response:
        relayed = b"".join(response.iter_raw())
    assert relayed == b"".join(completion_chunks("openai/gpt-5.4", 3, "hello ", include_usage=True))
    chunks = list(sdk(proxy).chat.completions.create(**{k: v for k, v in body.items()}))
    assert chunks[-1].usage.total_tokens == 8


def test_unchanged_body_is_forwarded_as_sent(mock_codex, auth_path, openrouter):
    settings = routing_settings(mock_codex, auth_path, openrouter, extra='[[routes]]\nprefix = "llama"\nprovider = "openrouter"\n')
    raw = b'{"model": "llama-3.3", "messages": [{"role": "user", "content": "hi"}], "custom_field": 1}'
    with ServerThread(create_app(settings)) as thread:
        response = httpx.post(f"{thread.url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.headers["x-subrelay-route"] == "openrouter/llama-3.3"
    assert openrouter[0].state.requests[-1]["raw"] == raw


def test_perplexity_gets_merged_alternating_turns(mock_codex, auth_path, openrouter):
    app, thread = openrouter
    app.state.require_alternation = True
    key = "pplx-" + "a8B7c6D5e4F3g2H1i0J9k8L7m6N5o4P3"
    app.state.api_key = key
    extra = f'[providers.perplexity]\nbase_url = "{thread.url}"\n'
    settings = routing_settings(mock_codex, auth_path, openrouter, extra=extra, env={"PERPLEXITY_API_KEY": key})
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with ServerThread(create_app(settings)) as proxy_thread:
        response = httpx.post(f"{proxy_thread.url}/v1/chat/completions", json={"model": "sonar", "messages": messages})
    assert response.status_code == 200, response.text
    assert app.state.requests[-1]["body"]["messages"] == [{"role": "system", "content": "s"},
                                                          {"role": "user", "content": "a\n\nb"}]


def test_a_rejected_api_key_is_a_401_naming_the_key_source(proxy, openrouter):
    openrouter[0].state.api_key = "sk-or-v1-" + "ffffeeee" * 8  # the key we hold was revoked
    response = httpx.post(f"{proxy}/chat/completions", json={"model": "openrouter/openai/gpt-5.4", "messages": USER})
    assert response.status_code == 401
    assert "OPENROUTER_API_KEY" in response.json()["error"]["message"]


def test_placeholder_key_is_caught_at_start_up_with_one_warning(mock_codex, auth_path, openrouter, caplog):
    caplog.set_level(logging.WARNING)
    settings = routing_settings(mock_codex, auth_path, openrouter, env={
        "OPENROUTER_API_KEY": "sk-or-v1-your-key-here", "OPENAI_API_KEY": "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"})
    app = create_app(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("openrouter" in w and "placeholder" in w for w in warnings)
    assert any("openai" in w and "Anthropic key" in w for w in warnings)
    assert any("fallback openrouter/openai/gpt-5.4" in w for w in warnings)
    assert "sk-ant-api03" not in caplog.text
    with ServerThread(app) as thread:
        response = httpx.post(f"{thread.url}/v1/chat/completions", json={"model": "openrouter/openai/gpt-5.4", "messages": USER})
    assert response.status_code == 401 and "placeholder" in response.json()["error"]["message"]
    assert openrouter[0].state.requests == []


def test_start_up_with_no_usable_provider_says_what_to_do(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    create_app(Settings(codex_auth_path=str(tmp_path / "none.json"), env={"CLAUDE_CONFIG_DIR": str(tmp_path)}))
    assert any("no provider is usable" in r.getMessage() and "subrelay login" in r.getMessage() for r in caplog.records)


def test_an_alias_whose_provider_is_unavailable_says_so(mock_codex, tmp_path, openrouter, caplog):
    missing_login = str(tmp_path / "no-auth.json")
    settings = routing_settings(mock_codex, missing_login, openrouter)
    with caplog.at_level(logging.WARNING, logger="subrelay.providers"):
        app = create_app(settings)
    assert any("alias fast -> codex/gpt-5.4-mini cannot be served for now" in r.getMessage() for r in caplog.records)
    with ServerThread(app) as thread:
        answer = httpx.post(f"{thread.url}/v1/chat/completions", json={"model": "fast", "messages": USER})
    error = answer.json()["error"]
    assert answer.status_code == 401 and error["code"] == "provider_unavailable"
    assert error["message"].startswith("The model 'fast' (an alias of 'codex/gpt-5.4-mini') is served by codex, "
                                       "which is unavailable: No ChatGPT login found at ")
    assert "login` (or `codex login`)." in error["message"] and ".." not in error["message"]


def test_a_custom_provider_that_is_down_is_named_in_the_502_and_the_log(mock_codex, auth_path, tmp_path, caplog):
    from tests.server.test_cli import free_port

    config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\n'
                                        f'base_url = "http://127.0.0.1:{free_port()}/v1"\nmodels = ["llama3"]\n'))
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_auth_path=auth_path, file=config)
    with caplog.at_level(logging.WARNING, logger="subrelay.upstream"), ServerThread(create_app(settings)) as thread:
        answer = httpx.post(f"{thread.url}/v1/chat/completions", json={"model": "local/llama3", "messages": USER})
    assert answer.status_code == 502
    assert answer.json()["error"]["message"].startswith("Could not connect to the provider local at http://127.0.0.1:")
    assert any(r.getMessage().startswith("provider local is unreachable at http://127.0.0.1:") for r in caplog.records)
