"""Reasoning efforts clamp to what the model's catalogue entry lists, on every door; Claude Code's
new body fields are accepted; the Codex CLI's model list is complete when built by subrelay."""

from __future__ import annotations

import httpx
import pytest

from adapters.codex.effort import clamp_effort

FOUR = ["low", "medium", "high", "xhigh"]


@pytest.mark.parametrize("asked,supported,sent", [
    ("none", FOUR, "low"),            # the Agents SDK's default on a model without "none"
    ("minimal", FOUR, "low"),
    ("max", FOUR, "xhigh"),           # Claude Code's effort on a model that stops at xhigh
    ("ultra", ["low", "medium", "high", "xhigh", "max"], "max"),
    ("high", FOUR, "high"),
    ("medium", ["low", "high"], "low"),  # a tie goes to the lower level
    ("none", ["none", "low"], "none"),
    ("turbo", ["low", "turbo"], "turbo"),  # a custom level passes where listed…
    ("turbo", FOUR, None),                 # …and is dropped where not
    ("max", None, "max"),                  # nothing known: unchanged
])
def test_clamp(asked, supported, sent):
    assert clamp_effort(asked, supported) == sent


def test_responses_effort_none_reaches_codex_as_the_nearest_level(proxy_url, mock_codex):
    response = httpx.post(f"{proxy_url}/responses", json={"model": "gpt-5.4", "input": "hi",
                                                          "reasoning": {"effort": "none"}})
    assert response.status_code == 200, response.text
    assert mock_codex.state.requests[-1]["body"]["reasoning"]["effort"] == "low"


def test_chat_reasoning_effort_is_clamped(proxy_url, mock_codex):
    response = httpx.post(f"{proxy_url}/chat/completions", json={
        "model": "gpt-5.4", "reasoning_effort": "minimal", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert mock_codex.state.requests[-1]["body"]["reasoning"]["effort"] == "low"


def _claude_code_body(first_system: str) -> dict:
    return {"model": "gpt-5.4", "max_tokens": 100,
            "system": [{"type": "text", "text": first_system},
                       {"type": "text", "text": "You are Claude Code."}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"},
                         {"role": "system", "content": "The user switched to plan mode."},
                         {"role": "user", "content": "go on"}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "max"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}


def test_claude_code_fields_are_accepted_and_the_billing_line_dropped(proxy_url, mock_codex):
    first = httpx.post(f"{proxy_url}/messages", json=_claude_code_body(
        "x-anthropic-billing-header: cc_version=2.1.332.a1b; cc_entrypoint=cli;"))
    second = httpx.post(f"{proxy_url}/messages", json=_claude_code_body(
        "x-anthropic-billing-header: cc_version=2.1.332.f9e; cc_entrypoint=cli; cc_gateway=env;"))
    assert first.status_code == 200 and second.status_code == 200, first.text
    sent = [r["body"] for r in mock_codex.state.requests[-2:]]
    assert sent[0]["reasoning"]["effort"] == "xhigh"  # output_config.effort max, clamped for gpt-5.4
    assert "x-anthropic-billing-header" not in str(sent[0]) and "context_management" not in sent[0]
    assert "plan mode" in str(sent[0])  # the mid-conversation system turn is kept
    assert sent[0]["prompt_cache_key"] == sent[1]["prompt_cache_key"]  # the line does not split the cache
    assert mock_codex.state.requests[-1]["headers"]["session_id"] == sent[1]["prompt_cache_key"]


def test_codex_cli_model_list_has_every_required_field(proxy_url, mock_codex):
    models = httpx.get(f"{proxy_url}/models", params={"client_version": "0.171.0"}).json()["models"]
    required = {"slug", "display_name", "supported_reasoning_levels", "shell_type", "visibility", "supported_in_api",
                "priority", "base_instructions", "support_verbosity", "truncation_policy",
                "supports_parallel_tool_calls", "experimental_supported_tools"}
    assert models and all(required <= set(entry) for entry in models)
    levels = {entry["slug"]: [level["effort"] for level in entry["supported_reasoning_levels"]] for entry in models}
    assert levels["gpt-5.4"] == FOUR
