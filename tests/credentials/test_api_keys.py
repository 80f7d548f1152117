"""The fail-closed API key check: every placeholder, paste slip and prefix rule."""

from __future__ import annotations

import pytest

from proxy.credentials.api_keys import key_problem

REAL = {
    "openai": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "anthropic": "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
    "openrouter": "sk-or-v1-" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "xai": "xai-" + "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz",
    "groq": "gsk_" + "Mn2Bv4Cx6Zl8Kj0Hg2Fd4Sa6Pq8Wr",
    "perplexity": "pplx-" + "a8B7c6D5e4F3g2H1i0J9k8L7m6N5o4P3",
    "gemini": "AIza" + "SyD4f6H8j0L2n4P6r8T0v2X4z6B8d0F2h",
}


@pytest.mark.parametrize("vendor", sorted(REAL))
def test_real_looking_keys_pass(vendor):
    assert key_problem(REAL[vendor], vendor) is None


@pytest.mark.parametrize("value,fragment", [
    (None, "not set"),
    ("", "not set"),
    ("   ", "not set"),
    (" " + REAL["openai"], "whitespace"),
    (REAL["openai"] + "\n", "whitespace"),
    ('"' + REAL["openai"] + '"', "quotes"),
    ("Bearer " + REAL["openai"], "starts with 'Bearer'"),  # the README promises Bearer detection
    ("Bearer" + REAL["openai"], "Bearer"),
    ("OPENAI_API_KEY=" + REAL["openai"], "NAME="),
    ("sk-your-openai-api-key-here-please", "placeholder"),
    ("YOUR_OPENAI_API_KEY_GOES_HERE_123", "placeholder"),
    ("sk-placeholder-000000000000000000000", "placeholder"),
    ("sk-dummy1234567890abcdefghijklmn", "placeholder"),
    ("sk-fake1234567890abcdefghijklmno", "placeholder"),
    ("sk-example1234567890abcdefghijkl", "placeholder"),
    ("sk-not-used-1234567890abcdefghij", "placeholder"),
    ("sk-changeme1234567890abcdefghijk", "placeholder"),
    ("sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "placeholder"),
    ("sk-...", "placeholder"),
    ("sk-<insert-key-here>", "placeholder"),
    ("sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "placeholder"),
    ("sk-abc123", "too short"),
    (REAL["anthropic"], "Anthropic key (sk-ant-…), not an OpenAI key"),
    (REAL["openrouter"], "OpenRouter key (sk-or-…), not an OpenAI key"),
    (REAL["groq"], "Groq key"),
    ("k9Jh7Gf5Ds3Aq1Wz8Xc6Vb4Nm2Lp0Ok9Ij", "OpenAI keys start with 'sk-'"),
])
def test_bad_openai_keys_are_rejected_with_the_reason(value, fragment):
    problem = key_problem(value, "openai")
    assert problem is not None and fragment in problem


def test_an_openai_key_in_the_anthropic_slot_is_rejected():
    assert "OpenAI key" in key_problem(REAL["openai"], "anthropic")


def test_gemini_and_groq_prefixes_are_enforced():
    assert "start with 'AIza'" in key_problem(REAL["xai"], "gemini") or "xAI" in key_problem(REAL["xai"], "gemini")
    assert "start with 'gsk_'" in key_problem("Mn2Bv4Cx6Zl8Kj0Hg2Fd4Sa6Pq8Wr1234", "groq")


def test_custom_endpoints_only_get_the_paste_checks():
    assert key_problem("EMPTY", None) is None
    assert key_problem("local-key", None) is None
    assert "quotes" in key_problem("'local-key'", None)
