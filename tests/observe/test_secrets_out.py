"""No credential leaves the proxy in an error, a log or the access log; useful codes still do."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from proxy.observe.redact import redact
from tests.server.test_cli import free_port, run_cli

CHAT = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}


def test_a_token_echoed_in_an_upstream_error_code_or_type_is_masked(proxy_url, mock_codex, auth_path):
    import orjson

    token = orjson.loads(open(auth_path, "rb").read())["tokens"]["access_token"]
    anthropic_like = "sk-ant-api03-" + "Q7w8E9r0T1y2U3i4O5p6A7s8D9f0"
    mock_codex.state.script = [
        {"status": 400, "body": {"error": {"message": "bad", "code": token, "type": token}}},
        {"status": 403, "body": {"error": {"message": "no", "code": anthropic_like, "type": "x"}}},
    ]
    for _ in range(2):
        response = httpx.post(f"{proxy_url}/chat/completions", json=CHAT)
        assert response.status_code in (400, 403)
        assert token not in response.text and anthropic_like not in response.text
        assert "[REDACTED]" in response.text


def test_a_refresh_failure_shows_its_code(proxy_url, mock_codex, auth_path):
    mock_codex.state.valid_access.clear()  # the upstream refuses the token: 401 → forced refresh
    mock_codex.state.live_refresh.clear()  # …and the refresh token was already used elsewhere
    response = httpx.post(f"{proxy_url}/chat/completions", json=CHAT)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "refresh_token_invalidated"
    assert "(refresh_token_invalidated)" in error["message"]


@pytest.mark.parametrize("text,kept", [
    ("refresh_token_reused", True), ("usage_limit_reached", True), ("task-management-service-v2", True),
    ("sk-proj-Abc123Def456Ghi789", False), ("Bearer abcdef0123456789", False),
])
def test_redaction_masks_secrets_not_codes(text, kept):
    assert (redact(f"x {text} y") == f"x {text} y") is kept


def test_the_debug_access_log_never_prints_a_key_from_a_query_string(tmp_path):
    port = free_port()
    env = {**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "none.json"), "SUBRELAY_LOG_LEVEL": "debug"}
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    secret = "Zq8Wx7Cv6Bn5Ml4Kj3Hg2Fd1"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        httpx.get(f"http://127.0.0.1:{port}/v1/models?api_key={secret}&token=sk-proj-{secret}")
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert "GET /v1/models?api_key=" in output  # the access log line is there…
    assert secret not in output  # …without the key


def test_a_public_bind_refuses_short_client_keys():
    result = run_cli("serve", "--host", "0.0.0.0", env={"SUBRELAY_API_KEYS": "a"})
    assert result.returncode == 2
    assert "at least 16" in result.stderr
