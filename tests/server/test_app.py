"""The HTTP surface: validation errors, client keys, model listing, bind safety."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest

from proxy.server.app import create_app
from proxy.config.settings import Settings, check_bind_is_safe, settings_from_env
from proxy.errors import ConfigError
from tests.conftest import write_auth_file
from tests.mock_upstream.server import MockState


@asynccontextmanager
async def client_for(settings: Settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            yield client


def settings(tmp_path, **kw) -> Settings:
    return Settings(codex_auth_path=str(tmp_path / "auth.json"), codex_base_url="http://127.0.0.1:9/never", **kw)


@pytest.mark.parametrize("body,param,code", [
    (b"{not json", None, "invalid_json"),
    (b"[]", None, "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "missing_required_parameter"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model", "invalid_type"),
    (b'{"model": "gpt-5.1"}', "messages", "missing_required_parameter"),
    (b'{"model": "gpt-5.1", "messages": []}', "messages", "invalid_type"),
    (b'{"model": "gpt-5.1", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", "invalid_value"),
    (b'{"model": "gpt-5.1", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n", "unsupported_value"),
    (b'{"model": "gpt-5.1", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream", "invalid_type"),
    (b'{"model": "gpt-5.1", "messages": [{"role": "tool", "content": "x"}]}', "messages[0].tool_call_id",
     "missing_required_parameter"),
])
async def test_bad_requests_get_a_400_naming_the_param(tmp_path, body, param, code):
    async with client_for(settings(tmp_path)) as client:
        response = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_404_model_not_found(tmp_path):
    async with client_for(settings(tmp_path)) as client:
        response = await client.post("/v1/chat/completions", json={"model": "llama-99", "messages": [{"role": "user", "content": "x"}]})
        retrieved = await client.get("/v1/models/llama-99")
    assert response.status_code == retrieved.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_missing_login_is_a_401_telling_what_to_run(tmp_path):
    async with client_for(settings(tmp_path)) as client:
        response = await client.post("/v1/chat/completions", json={"model": "gpt-5.1-codex", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 401
    assert "codex login" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "provider_unavailable"


async def test_models_lists_the_codex_catalogue_and_retrieves_one(tmp_path):
    write_auth_file(str(tmp_path / "auth.json"), MockState().auth_file())
    async with client_for(settings(tmp_path)) as client:
        listing = (await client.get("/v1/models")).json()
        one = await client.get("/v1/models/gpt-5.5")
        explicit = await client.get("/v1/models/codex/gpt-5.9-codex")
    ids = [m["id"] for m in listing["data"]]
    assert listing["object"] == "list" and "gpt-6-astra" in ids and "gpt-5.4-mini" in ids
    assert "gpt-5.1-codex" not in ids  # refused by the backend since 2026-07: no longer listed
    created = next(m["created"] for m in listing["data"] if m["id"] == "gpt-5.5")
    assert one.json() == {"id": "gpt-5.5", "object": "model", "created": created, "owned_by": "codex"} and created > 0
    assert explicit.status_code == 200 and explicit.json()["owned_by"] == "codex"


async def test_healthz_and_unknown_paths(tmp_path):
    async with client_for(settings(tmp_path)) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        missing = await client.get("/v1/nothing")
        wrong_method = await client.get("/v1/chat/completions")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert wrong_method.status_code == 405


async def test_configured_keys_are_required_as_bearer_or_x_api_key(tmp_path):
    async with client_for(settings(tmp_path, api_keys=("key-one-abcdefgh", "key-two-abcdefgh"))) as client:
        none = await client.get("/v1/models")
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        bearer = await client.get("/v1/models", headers={"Authorization": "Bearer key-two-abcdefgh"})
        x_api_key = await client.get("/v1/models", headers={"x-api-key": "key-one-abcdefgh"})
        health = await client.get("/healthz")
    assert none.status_code == wrong.status_code == 401
    assert none.json()["error"]["type"] == "authentication_error"
    assert "key-one" not in wrong.text
    assert bearer.status_code == x_api_key.status_code == health.status_code == 200


def test_non_loopback_bind_requires_client_keys():
    check_bind_is_safe(Settings(host="127.0.0.1"))
    check_bind_is_safe(Settings(host="::1"))
    check_bind_is_safe(Settings(host="0.0.0.0", api_keys=("k" * 24,)))
    with pytest.raises(ConfigError, match="SUBRELAY_API_KEYS"):
        check_bind_is_safe(Settings(host="0.0.0.0"))


def test_settings_come_from_the_environment(tmp_path):
    instructions = tmp_path / "instructions.md"
    instructions.write_text("Be brief.\n")
    s = settings_from_env({"SUBRELAY_PORT": "9000", "SUBRELAY_API_KEYS": "a-key-1234, b-key-5678",
                           "CODEX_HOME": str(tmp_path), "SUBRELAY_DEFAULT_INSTRUCTIONS_FILE": str(instructions),
                           "SUBRELAY_READ_TIMEOUT": "12.5"})
    assert s.port == 9000 and s.api_keys == ("a-key-1234", "b-key-5678")
    assert s.codex_auth_path == str(tmp_path / "auth.json")
    assert s.default_instructions == "Be brief." and s.timeouts.read == 12.5
    assert settings_from_env({"CODEX_AUTH_PATH": "/x/a.json", "CODEX_HOME": "/y"}).codex_auth_path == "/x/a.json"
    with pytest.raises(ConfigError, match="SUBRELAY_PORT"):
        settings_from_env({"SUBRELAY_PORT": "eighty"})


def test_a_refused_request_still_logs_the_model_it_asked_for(tmp_path, caplog):
    """400, 401 and 404 lines keep the requested model (when the body parsed), not ``model=-``."""
    import logging

    from proxy.config.settings import Settings
    from proxy.server.app import create_app
    from tests.mock_upstream import ServerThread

    settings = Settings(codex_auth_path=str(tmp_path / "none.json"), env={})
    caplog.set_level(logging.INFO, logger="subrelay.requests")
    with ServerThread(create_app(settings)) as thread:
        url = thread.url
        bad = httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-5.4", "messages": "nope"})
        no_login = httpx.post(f"{url}/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
        unknown = httpx.post(f"{url}/v1/messages", json={"model": "mystery-1", "max_tokens": 5,
                                                         "messages": [{"role": "user", "content": "hi"}]})
        broken = httpx.post(f"{url}/v1/chat/completions", content=b'{"model": "gpt-5.4", ',
                            headers={"content-type": "application/json"})
    assert [bad.status_code, no_login.status_code, unknown.status_code, broken.status_code] == [400, 401, 404, 400]
    lines = [(r.fields["status"], r.fields["model"]) for r in caplog.records if r.name == "subrelay.requests"]
    assert lines == [(400, "gpt-5.4"), (401, "gpt-5.5"), (404, "mystery-1"), (400, "-")]


def test_client_keys_pasted_with_bearer_are_refused_at_start_up():
    settings = settings_from_env({"SUBRELAY_API_KEYS": "Bearer sk-client-key-0123456789abcdef"})
    with pytest.raises(ConfigError, match="starting with 'Bearer '; list the keys alone"):
        check_bind_is_safe(settings)


def test_the_bare_address_points_to_the_api_and_the_account_page_and_models_have_a_real_created(tmp_path):
    import time

    from proxy.config.settings import Settings
    from proxy.server.app import create_app
    from tests.mock_upstream import ServerThread

    settings = Settings(codex_auth_path=str(tmp_path / "none.json"),
                        env={"OPENAI_API_KEY": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"})
    with ServerThread(create_app(settings)) as thread:
        root = httpx.get(f"{thread.url}/")
        models = httpx.get(f"{thread.url}/v1/models").json()["data"]
        one = httpx.get(f"{thread.url}/v1/models/{models[0]['id']}").json()
    assert root.status_code == 200
    assert root.json()["api"] == f"{thread.url}/v1" and root.json()["account"] == f"{thread.url}/account"
    assert models and all(abs(entry["created"] - time.time()) < 3600 for entry in models)
    assert one["created"] == models[0]["created"]


def test_uvicorns_own_lines_have_subrelays_format(tmp_path):
    """`subrelay serve`'s start-up and WebSocket lines from uvicorn ("Application startup complete",
    "connection open") are in subrelay's line format, not uvicorn's "INFO:     …" (issue 27)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.redis_server import free_port

    port = free_port()
    env = {**os.environ, "CODEX_AUTH_PATH": str(tmp_path / "none.json"), "SUBRELAY_STATE_DIR": str(tmp_path / "s")}
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("startup complete" in line for line in lines) and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    started = [line for line in lines if "startup complete" in line]
    assert started and " INFO uvicorn.error: " in started[0], lines
    assert not any(line.startswith("INFO:") for line in lines), lines
