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


def test_a_config_naming_an_undefined_provider_stops_serve_and_shows_in_status(tmp_path):
    config = tmp_path / "subrelay.toml"
    config.write_text('[aliases]\nfast = "nosuch/gpt-5.4"\n')
    env = {"CODEX_AUTH_PATH": str(tmp_path / "none.json"), "SUBRELAY_PORT": str(free_port())}
    for args in (("--config", str(config), "serve"), ("serve", "--config", str(config)),
                 ("status", "--config", str(config))):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, args
        assert "aliases.fast: 'nosuch/gpt-5.4' names the provider 'nosuch'" in result.stderr
        assert "listening" not in result.stderr and "Traceback" not in result.stderr


def test_a_port_out_of_range_is_refused_like_workers():
    for port in ("99999", "-1", "0"):
        result = run_cli("serve", "--port", port)
        assert result.returncode == 2
        assert f"--port (or SUBRELAY_PORT) must be between 1 and 65535, got {port}" in result.stderr
        assert "listening" not in result.stderr


def test_a_taken_port_says_what_holds_it_and_how_to_pick_another(tmp_path):
    with socket.socket() as squatter:  # some other program
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env={"CODEX_AUTH_PATH": str(tmp_path / "none.json")})
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use by another program" in result.stderr
    assert "serve --port 8788 (or SUBRELAY_PORT=8788)" in result.stderr
    assert "listening" not in result.stderr and "Traceback" not in result.stderr and "Errno" not in result.stderr

    port = free_port()
    env = {"CODEX_AUTH_PATH": str(tmp_path / "none.json")}
    first = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                             env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "subrelay did not start"
                time.sleep(0.1)
        second = run_cli("serve", "--port", str(port), env=env)
        assert second.returncode == 1
        assert "already in use by another subrelay (version " in second.stderr
    finally:
        first.terminate()
        _, err = first.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port}/v1" in err


def test_status_json_into_a_pipe_that_closes_early(tmp_path):
    # `true` reads nothing and exits at once: every write subrelay makes meets a closed pipe.
    result = subprocess.run(f"{sys.executable} -m proxy status --json | true", shell=True, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "none.json")})
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_login_help_names_the_variables_that_point_it_elsewhere():
    result = run_cli("login", "--help")
    assert result.returncode == 0 and "SUBRELAY_AUTH_BASE_URL" in " ".join(result.stdout.split())


def test_status_says_a_key_was_only_format_checked_and_the_login_outlives_its_access_token(tmp_path, mock_codex):
    path = str(tmp_path / "auth.json")
    write_auth_file(path, mock_codex.state.auth_file())
    key = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6"
    result = run_cli("status", env={"CODEX_AUTH_PATH": path, "OPENAI_API_KEY": key})
    openai_row = next(line for line in result.stdout.splitlines() if line.startswith("openai "))
    assert "ok (looks valid, not checked)" in openai_row and key not in result.stdout
    codex_row = next(line for line in result.stdout.splitlines() if line.startswith("codex "))
    assert "access token renews itself (next " in codex_row


def test_messages_name_the_login_command_as_it_is_installed(tmp_path):
    """Installed as the README says, the command is .venv/bin/subrelay, not on PATH: advice says that."""
    script = os.path.join(sys.prefix, "bin", "subrelay")
    path = ":".join(p for p in os.environ.get("PATH", "").split(":") if os.path.realpath(p) != os.path.dirname(os.path.realpath(script)))
    result = subprocess.run([script, "status"], capture_output=True, text=True, timeout=30, cwd=os.path.dirname(sys.prefix),
                            env={**os.environ, "PATH": path, "CODEX_AUTH_PATH": str(tmp_path / "none.json")})
    expected = os.path.relpath(script, os.path.dirname(sys.prefix))  # e.g. .venv/bin/subrelay
    assert f"run `{script} login`" in result.stdout or f"run `{expected} login`" in result.stdout


def test_a_claude_name_with_no_login_and_no_key_says_both_without_nested_parentheses(tmp_path):
    from proxy.config.settings import Settings
    from proxy.server.app import create_app
    from tests.mock_upstream import ServerThread

    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), env={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    with ServerThread(create_app(settings)) as thread:
        answer = httpx.post(f"{thread.url}/v1/messages", headers={"anthropic-version": "2023-06-01"},
                            json={"model": "claude-opus-4-8", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    message = answer.json()["error"]["message"]
    assert answer.status_code == 404 and ".)." not in message and "(The model" not in message
    assert "log in (`" in message and "login`), then set ANTHROPIC_MODEL=gpt-5.5" in message
