"""Tokens are counted on every path, relayed bytes included: a Chat Completions key relayed as is
(stream and not), the Codex Responses pass-through (stream and not) and Anthropic's Messages relayed
as is. Real SDK calls against the loopback mocks; the log line and ``/metrics`` must show the tokens."""

from __future__ import annotations

import logging
import tomllib

import anthropic
import httpx
import pytest
from openai import OpenAI

from proxy.config.file import parse_config
from proxy.config.settings import Settings
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.mock_upstream.anthropic_server import AnthropicMockState, MockAnthropicServer
from tests.mock_upstream.openai_server import MockOpenAIServer, OpenAIMockState

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def _upstreams():
    claude, compat = MockAnthropicServer(), MockOpenAIServer()
    with ServerThread(claude) as a, ServerThread(compat) as o:
        yield claude, a, compat, o


@pytest.fixture
def proxy(_upstreams, mock_codex, auth_path, tmp_path):
    claude, a_thread, compat, o_thread = _upstreams
    claude.state, compat.state = AnthropicMockState(), OpenAIMockState()
    config = parse_config(tomllib.loads(f'[providers.local]\nkind = "custom"\nbase_url = "{o_thread.url}/v1"\n'
                                        f'api_key = "{compat.state.api_key}"\nmodels = ["llama3"]\n'))
    settings = Settings(codex_base_url=f"{mock_codex.url}/backend-api/codex", codex_token_url=f"{mock_codex.url}/oauth/token",
                        codex_auth_path=auth_path, anthropic_base_url=a_thread.url, file=config,
                        env={"ANTHROPIC_API_KEY": claude.state.api_key, "CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def _tokens(url: str) -> dict[tuple[str, str], float]:
    """subrelay_tokens_total by (provider, kind), summed over models."""
    totals: dict[tuple[str, str], float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("subrelay_tokens_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            key = (labels["provider"].strip('"'), labels["kind"].strip('"'))
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def _delta(before: dict, after: dict, provider: str, kind: str) -> float:
    return after.get((provider, kind), 0.0) - before.get((provider, kind), 0.0)


def _request_lines(caplog, route: str) -> list[dict]:
    return [record.fields for record in caplog.records
            if record.name == "subrelay.requests" and record.fields.get("route") == route]


def test_relayed_chat_and_codex_responses_are_counted(proxy, caplog):
    caplog.set_level(logging.INFO, logger="subrelay.requests")
    before = _tokens(proxy)
    client = OpenAI(base_url=f"{proxy}/v1", api_key="unused", max_retries=0)

    answer = client.chat.completions.create(model="local/llama3", messages=USER)  # relayed body
    chunks = list(client.chat.completions.create(model="local/llama3", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))  # relayed SSE
    assert answer.usage.prompt_tokens == 5 and chunks[-1].usage.prompt_tokens == 5
    streamed_out = chunks[-1].usage.completion_tokens

    final = client.responses.create(model="gpt-5.4", input="hi")  # Codex pass-through, aggregated
    with client.responses.stream(model="gpt-5.4", input="hi again") as stream:  # Codex events relayed
        for _ in stream:
            pass
        streamed = stream.get_final_response()
    assert final.usage.input_tokens == streamed.usage.input_tokens == 37

    after = _tokens(proxy)
    assert _delta(before, after, "local", "input") == 10
    assert _delta(before, after, "local", "output") == answer.usage.completion_tokens + streamed_out
    assert _delta(before, after, "codex", "input") == 2 * 37
    assert _delta(before, after, "codex", "output") == 2 * final.usage.output_tokens
    assert _delta(before, after, "codex", "cached") == 2 * final.usage.input_tokens_details.cached_tokens
    assert _delta(before, after, "codex", "reasoning") == 2 * final.usage.output_tokens_details.reasoning_tokens

    local = _request_lines(caplog, "local/llama3")
    codex = _request_lines(caplog, "codex/gpt-5.4")
    assert [line["tokens_in"] for line in local] == [5, 5]
    assert [line["tokens_in"] for line in codex] == [37, 37]
    assert codex[0]["tokens_out"] == final.usage.output_tokens and codex[0]["tokens_cached"] == 8
    assert codex[0]["tokens_reasoning"] == final.usage.output_tokens_details.reasoning_tokens


def test_relayed_anthropic_messages_are_counted(proxy, caplog):
    caplog.set_level(logging.INFO, logger="subrelay.requests")
    before = _tokens(proxy)
    client = anthropic.Anthropic(base_url=proxy, api_key="unused", max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=USER)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=USER) as stream:
        streamed = stream.get_final_message()
    after = _tokens(proxy)
    # Anthropic's input_tokens leave out cache reads and writes: the count includes them, as the translator does.
    def prompt(usage) -> int:
        return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    assert _delta(before, after, "anthropic", "input") == prompt(message.usage) + prompt(streamed.usage)
    assert _delta(before, after, "anthropic", "output") == message.usage.output_tokens + streamed.usage.output_tokens
    lines = [fields for record in caplog.records if record.name == "subrelay.requests"
             and (fields := record.fields).get("route", "").startswith("anthropic/")]
    assert [line["tokens_in"] for line in lines] == [prompt(message.usage), prompt(streamed.usage)]
    assert all(line["tokens_out"] > 0 for line in lines)
