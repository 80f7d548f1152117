"""The real Codex CLI reads subrelay's model list (``GET /v1/models?client_version=``) instead of its
bundled one, when the provider block names it with ``model_catalog_url`` (issue 22, item 4); with the
built-in provider moved by ``openai_base_url``, only a saved copy (``model_catalog_json``) works.

Why that line is needed (codex-rs ``models-manager/src/manager.rs``: ``should_refresh_models``,
``supports_api_key_discovery``; ``model-provider/src/models_endpoint.rs``: ``supports_api_key_models``):
with an API key, Codex fetches ``/models`` only from the first-party OpenAI endpoint or from a
provider's ``model_catalog_url`` (which the built-in ``openai`` provider accepts only on ChatGPT
hosts); a plain provider block never asks, and every model outside the bundled list runs on
"fallback metadata". ``nova-1`` is in no catalogue Codex ships, only in the mock account's, so it
shows which list the CLI used.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from proxy.server.app import create_app
from tests.clients.test_npm_clients import (  # noqa: F401 (npm_clients is a fixture)
    CODEX_BASE_URL,
    CODEX_PROVIDER_BLOCK,
    _isolated_env,
    npm_clients,
)
from tests.mock_upstream import ServerThread

CATALOG_LINE = 'model_catalog_url = "{url}/v1/models"\n'
FALLBACK_WARNING = "Model metadata for `nova-1` not found"


def _codex(npm_clients, tmp_path, config: str, url: str) -> tuple[subprocess.CompletedProcess, Path]:  # noqa: F811
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    (codex_home / "config.toml").write_text(config.format(url=url))
    env = {**_isolated_env(home, npm_clients), "CODEX_HOME": str(codex_home), "SUBRELAY_API_KEY": "unused",
           "CODEX_API_KEY": "unused"}
    result = subprocess.run([npm_clients.bin("codex"), "exec", "--skip-git-repo-check", "-m", "nova-1", "say hi"],
                            check=False, capture_output=True, text=True, timeout=180, env=env, cwd=work,
                            stdin=subprocess.DEVNULL)
    return result, codex_home


CONFIGS = {
    "model_catalog_url": CODEX_PROVIDER_BLOCK + CATALOG_LINE,
    "model_catalog_json": CODEX_BASE_URL + 'model_catalog_json = "{catalog}"\n',
    "plain-block": CODEX_PROVIDER_BLOCK,
}


@pytest.mark.parametrize("setup", list(CONFIGS))
def test_codex_cli_uses_subrelays_model_list(setup, npm_clients, proxy_settings, mock_codex, tmp_path):  # noqa: F811
    with ServerThread(create_app(proxy_settings)) as proxy:
        saved = tmp_path / "subrelay-models.json"  # what the README's curl line saves
        saved.write_bytes(httpx.get(f"{proxy.url}/v1/models", params={"client_version": "0.171.0"}).content)
        result, codex_home = _codex(npm_clients, tmp_path, CONFIGS[setup].replace("{catalog}", str(saved)), proxy.url)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Hello! You said: say hi" in result.stdout
    sent = mock_codex.state.requests[-1]["body"]
    if setup == "plain-block":  # Codex never asks, says so, and sends no effort of its own
        assert FALLBACK_WARNING in output
        assert "mock backend prompt" not in json.dumps(sent["input"])  # its own prompt instead
        assert not (codex_home / "models_cache.json").exists()
        assert "effort" not in sent.get("reasoning", {})
        return
    assert FALLBACK_WARNING not in output, output[-3000:]
    source = codex_home / "models_cache.json" if setup == "model_catalog_url" else saved
    entries = {entry["slug"]: entry for entry in json.loads(source.read_text())["models"]}
    # the CLI fetched the list itself (its cache), and sends what subrelay's entry says: the
    # account's prompt for the model first, its default effort and verbosity
    prompt = sent["input"][0]["content"][0]["text"]
    assert prompt == entries["nova-1"]["model_messages"]["instructions_template"]
    assert sent["reasoning"]["effort"] == entries["nova-1"]["default_reasoning_level"]
    assert sent["text"]["verbosity"] == entries["nova-1"]["default_verbosity"]
