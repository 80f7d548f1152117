"""The ``subrelay`` command as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import write_auth_file


def run_cli(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_refuses_a_public_bind_without_client_keys():
    result = run_cli("serve", "--host", "0.0.0.0", env={"SUBRELAY_API_KEYS": ""})
    assert result.returncode == 2
    assert "SUBRELAY_API_KEYS" in result.stderr


def test_serve_listens_on_loopback_and_answers(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                               env={**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "none.json")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "subrelay did not start"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_status_shows_state_without_secrets(tmp_path, mock_codex):
    path = str(tmp_path / "auth.json")
    data = mock_codex.state.auth_file()
    write_auth_file(path, data)
    result = run_cli("status", env={"CODEX_AUTH_PATH": path})
    assert result.returncode == 0
    assert "codex" in result.stdout and " ok " in result.stdout
    for secret in (data["tokens"]["access_token"], data["tokens"]["refresh_token"]):
        assert secret not in result.stdout
    missing = run_cli("status", env={"CODEX_AUTH_PATH": str(tmp_path / "nope.json")})
    assert "not configured" in missing.stdout and "codex login" in missing.stdout
