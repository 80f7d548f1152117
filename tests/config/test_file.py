"""subrelay.toml: the documented example parses; every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.settings import settings_from_env
from proxy.config.file import load_config_file, parse_config
from proxy.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent.parent / "subrelay.example.toml"


def test_the_documented_example_parses_completely():
    config = load_config_file(str(EXAMPLE))
    assert [p.name for p in config.providers] == ["codex", "openrouter", "local"]
    openrouter = config.providers[1]
    assert openrouter.kind == "openrouter" and openrouter.api_key_env == "OPENROUTER_API_KEY"
    assert openrouter.headers["X-Title"] == "my-app"
    assert config.aliases == {"fast": "codex/gpt-5.4-mini", "smart": "codex/gpt-5.4"}
    assert [(r.pattern, r.provider) for r in config.routes] == [("llama*", "local")]
    assert config.fallbacks["codex/gpt-5.4"] == ("codex/gpt-5.4-mini", "openrouter/openai/gpt-5.4")
    assert config.default_instructions == "You are a concise, helpful assistant."


def test_config_path_comes_from_env_and_feeds_default_instructions(tmp_path):
    path = tmp_path / "subrelay.toml"
    path.write_text('default_instructions = "From the file."\n')
    settings = settings_from_env({"SUBRELAY_CONFIG": str(path)})
    assert settings.default_instructions == "From the file."
    assert settings_from_env({"SUBRELAY_CONFIG": str(path), "SUBRELAY_DEFAULT_INSTRUCTIONS": "env"}).default_instructions == "env"


@pytest.mark.parametrize("data,key", [
    ({"provider": {}}, "provider: unknown key"),
    ({"providers": {"x": {"kind": "mystery"}}}, "providers.x.kind"),
    ({"providers": {"x": {"kind": "custom"}}}, "providers.x.base_url: is required"),
    ({"providers": {"x": {"kind": "custom", "base_url": "ftp://h"}}}, "providers.x.base_url: must start"),
    ({"providers": {"openai": {"api_key": "a", "api_key_env": "B"}}}, "either api_key or api_key_env"),
    ({"providers": {"openai": {"apikey": "a"}}}, "providers.openai.apikey: unknown key"),
    ({"providers": {"openai": {"models": "gpt-4o"}}}, "providers.openai.models"),
    ({"aliases": {"fast": 3}}, "aliases"),
    ({"aliases": {"a/b": "codex/x"}}, "aliases.a/b"),
    ({"routes": [{"prefix": "llama"}]}, "routes[0].provider"),
    ({"fallbacks": {"codex/gpt-5.4": "codex/gpt-5.4-mini"}}, "fallbacks.codex/gpt-5.4"),
    ({"default_instructions": ""}, "default_instructions"),
    ({"providers": {"x": {"base_url": "http://h"}}}, "providers.x.kind: is missing"),
    ({"aliases": {"fast": "nosuch/gpt-5.4"}}, "aliases.fast: 'nosuch/gpt-5.4' names the provider 'nosuch'"),
    ({"routes": [{"prefix": "llama", "provider": "local"}]}, "routes[0].provider: names the provider 'local', "
                                                             "which no [providers.local] section defines"),
    ({"fallbacks": {"codex/gpt-5.4": ["nosuch/x"]}}, "fallbacks.codex/gpt-5.4: 'nosuch/x' names the provider"),
    ({"fallbacks": {"nosuch/x": ["codex/gpt-5.4"]}}, "fallbacks.nosuch/x: 'nosuch/x'"),
])
def test_invalid_config_names_the_key_and_the_problem(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "subrelay.toml")
    assert key in str(info.value) and str(info.value).startswith("subrelay.toml: ")


def test_a_broken_file_stops_start_up(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("providers = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(str(tmp_path / "missing.toml"))


def test_names_that_a_section_or_a_route_defines_are_accepted():
    config = parse_config({"providers": {"local": {"kind": "custom", "base_url": "http://127.0.0.1:1/v1"}},
                           "aliases": {"l": "local/llama3", "o": "openrouter/openai/gpt-5.4", "bare": "gpt-5.4",
                                       "hf": "meta-llama/Llama-3"},
                           "routes": [{"pattern": "meta-llama/*", "provider": "local"}],
                           "fallbacks": {"l": ["codex/gpt-5.4-mini", "hf"]}})
    assert config.aliases["hf"] == "meta-llama/Llama-3" and config.fallbacks["l"] == ("codex/gpt-5.4-mini", "hf")
    with pytest.raises(ConfigError, match="no .providers.x. section defines"):
        parse_config({"providers": {"y": {"kind": "openai"}}, "aliases": {"a": "x/m"}})
