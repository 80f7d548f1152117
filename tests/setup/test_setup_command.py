"""``subrelay setup``'s files, without the npm CLIs (tests/clients/test_setup_clients.py runs those):
where each client's file goes (its own home variables), what goes in it, that the user's own lines
stay, that a second run changes nothing, that ``--undo`` restores byte for byte, and that a problem
(keys refused, nothing listening, a file it will not edit safely) is said and leaves files alone.
The SDK checks run the real Python SDKs against subrelay.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tomllib

import pytest
import yaml

from proxy.server.app import create_app
from proxy.server.cli import main
from tests.mock_upstream import ServerThread

KEY = "sk-subrelay-setup-unit-0123456789abcdef"


@pytest.fixture
def user_env(tmp_path, monkeypatch):
    """A shell with its own HOME and client homes, and no subrelay or client variable of the machine's."""
    for name in list(os.environ):
        if name.startswith(("SUBRELAY_", "ANTHROPIC_", "OPENAI_", "CODEX_", "CLAUDE_", "XDG_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))  # no codex/claude/opencode/aider on it
    return home


@pytest.fixture
def subrelay(proxy_settings):
    with ServerThread(create_app(proxy_settings)) as proxy:
        yield proxy.url


@pytest.fixture
def keyed(proxy_settings):
    with ServerThread(create_app(dataclasses.replace(proxy_settings, api_keys=(KEY,)))) as proxy:
        yield proxy.url


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(["setup", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_codex_block_keeps_the_users_lines_is_idempotent_and_undoes(user_env, subrelay, monkeypatch, capsys, tmp_path):
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    original = (b'# mine\nmodel = "o3"  \n\n[model_providers.subrelay]\nenv_key = "SUBRELAY_API_KEY"\n'
                b'request_max_retries = 2\n\n[profiles.fast]\nmodel = "gpt-5.4-mini"\n')
    config = codex_home / "config.toml"
    config.write_bytes(original)
    config.chmod(0o640)
    code, out = _run(capsys, "codex", "--url", subrelay, "--no-check")
    assert code == 0, out
    written = config.read_bytes()
    parsed = tomllib.loads(written.decode())
    assert parsed["model"] == "gpt-5.5" and parsed["model_provider"] == "subrelay"
    block = parsed["model_providers"]["subrelay"]
    assert block == {"request_max_retries": 2, "name": "openai", "base_url": f"{subrelay}/v1", "wire_api": "responses",
                     "experimental_bearer_token": "unused", "model_catalog_url": f"{subrelay}/v1/models"}
    assert parsed["profiles"]["fast"]["model"] == "gpt-5.4-mini"  # another table's `model` is not ours
    assert written.startswith(b"# mine\n")

    code, out = _run(capsys, "codex", "--url", subrelay, "--no-check")
    assert code == 0 and "unchanged" in out and config.read_bytes() == written

    code, out = _run(capsys, "codex", "--undo")
    assert code == 0 and "restored" in out
    assert config.read_bytes() == original and oct(config.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in codex_home.iterdir()) == ["config.toml"]


def test_undo_keeps_edits_made_after_setup_unless_forced(user_env, subrelay, capsys):
    codex = user_env / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_bytes(b'model = "o3"\n')
    assert _run(capsys, "codex", "--url", subrelay, "--no-check")[0] == 0
    codex.write_bytes(codex.read_bytes() + b'\n[tui]\nnotifications = false\n')  # the user's own edit
    code, out = _run(capsys, "codex", "--undo")
    assert code == 2 and "changed after subrelay setup wrote it" in out and "--undo --force" in out
    assert b"notifications" in codex.read_bytes()  # nothing lost
    code, out = _run(capsys, "codex", "--undo", "--force")
    assert code == 0 and codex.read_bytes() == b'model = "o3"\n'
    assert sorted(p.name for p in codex.parent.iterdir()) == ["config.toml"]


def test_a_file_setup_created_is_removed_by_undo_and_print_writes_nothing(user_env, subrelay, capsys):
    code, out = _run(capsys, "codex", "--url", subrelay, "--print")
    assert code == 0
    printed = tomllib.loads(out.split("\n", 1)[1])  # after the "# <path>" line
    assert printed["model_providers"]["subrelay"]["model_catalog_url"] == f"{subrelay}/v1/models"
    assert not (user_env / ".codex").exists()  # ~/.codex, since CODEX_HOME is unset

    assert _run(capsys, "codex", "--url", subrelay, "--no-check")[0] == 0
    assert (user_env / ".codex" / "config.toml").exists()
    code, out = _run(capsys, "codex", "--undo")
    assert code == 0 and "there was none before" in out
    assert list((user_env / ".codex").iterdir()) == []


def test_claude_code_env_block_from_the_catalogue(user_env, subrelay, monkeypatch, capsys, tmp_path):
    claude_dir = tmp_path / "claude"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude_dir))
    claude_dir.mkdir()
    (claude_dir / "settings.json").write_text('{"theme": "dark", "env": {"FOO": "1", "ANTHROPIC_MODEL": "x"}}')
    code, out = _run(capsys, "claude-code", "--url", subrelay, "--model", "nova-1")
    settings = json.loads((claude_dir / "settings.json").read_text())
    assert settings["theme"] == "dark" and settings["env"]["FOO"] == "1"
    assert settings["env"] | {} == {**settings["env"], "ANTHROPIC_BASE_URL": subrelay, "ANTHROPIC_AUTH_TOKEN": "unused",
                                    "ANTHROPIC_MODEL": "nova-1", "ANTHROPIC_DEFAULT_OPUS_MODEL": "nova-1",
                                    "ANTHROPIC_DEFAULT_SONNET_MODEL": "nova-1",
                                    "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-5.4-mini",
                                    "ANTHROPIC_SMALL_FAST_MODEL": "gpt-5.4-mini",
                                    "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "272000"}
    # no claude on PATH: written, and the check says it could not run the client (exit 1)
    assert code == 1 and "`claude` is not on PATH" in out


def test_claude_names_get_no_context_override(user_env, subrelay, capsys):
    """Claude Code ignores CLAUDE_CODE_MAX_CONTEXT_TOKENS for a Claude model name (it knows those)."""
    assert _run(capsys, "claude-code", "--url", subrelay, "--model", "claude-opus-4-8", "--no-check")[0] == 0
    env = json.loads((user_env / ".claude" / "settings.json").read_text())["env"]
    assert env["ANTHROPIC_MODEL"] == "claude-opus-4-8" and "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in env


def test_keys_on_without_a_key_writes_nothing_and_says_how(user_env, keyed, capsys):
    code, out = _run(capsys, "claude-code", "--url", keyed)
    assert code == 1 and "SUBRELAY_API_KEY=<your key>" in out
    assert not (user_env / ".claude").exists()


def test_keys_on_writes_the_key_owner_only(user_env, keyed, monkeypatch, capsys):
    monkeypatch.setenv("SUBRELAY_API_KEY", KEY)
    code, out = _run(capsys, "opencode", "--url", keyed)
    assert code == 0, out
    assert KEY not in out
    path = user_env / ".config" / "opencode" / "opencode.json"  # ~/.config when XDG_CONFIG_HOME is unset
    config = json.loads(path.read_text())
    provider = config["provider"]["subrelay"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": f"{keyed}/v1", "apiKey": KEY}
    assert provider["models"]["gpt-5.5"]["limit"]["context"] == 272000 and "nova-1" in provider["models"]
    assert config["model"] == "subrelay/gpt-5.5" and config["small_model"] == "subrelay/gpt-5.4-mini"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "opencode itself was not run" in out  # said, not hidden


def test_a_wrong_key_is_refused_before_anything_is_written(user_env, keyed, monkeypatch, capsys):
    monkeypatch.setenv("SUBRELAY_API_KEY", "sk-wrong-key-0123456789abcdefghij")
    code, out = _run(capsys, "aider", "--url", keyed)
    assert code == 1 and "refused the key from SUBRELAY_API_KEY" in out and "sk-wrong" not in out
    assert not (user_env / ".aider.conf.yml").exists()


def test_aider_conf_keeps_other_lines(user_env, subrelay, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # aider's file is in HOME regardless
    conf = user_env / ".aider.conf.yml"
    conf.write_bytes(b"# aider\ndark-mode: true\nmodel: gpt-4o\n")
    assert _run(capsys, "aider", "--url", subrelay)[0] == 0
    loaded = yaml.safe_load(conf.read_text())
    assert loaded == {"dark-mode": True, "model": "openai/gpt-5.5", "openai-api-base": f"{subrelay}/v1",
                      "openai-api-key": "unused", "weak-model": "openai/gpt-5.4-mini"}
    assert conf.read_text().startswith("# aider\ndark-mode: true\nmodel: ")
    assert _run(capsys, "aider", "--undo")[0] == 0
    assert conf.read_bytes() == b"# aider\ndark-mode: true\nmodel: gpt-4o\n"


def test_nothing_listening_writes_defaults_and_fails_the_check(user_env, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = _run(capsys, "codex", "--url", f"http://127.0.0.1:{port}")
    assert code == 1 and "nothing answers at" in out and "subrelay serve" in out
    assert tomllib.loads((user_env / ".codex" / "config.toml").read_text())["model"] == "gpt-5.5"


@pytest.mark.parametrize("content", [b"model = [broken\n", b'model_providers = { subrelay = { base_url = "x" } }\n'])
def test_a_file_it_cannot_edit_safely_is_left_alone(user_env, subrelay, capsys, content):
    (user_env / ".codex").mkdir()
    (user_env / ".codex" / "config.toml").write_bytes(content)
    code, out = _run(capsys, "codex", "--url", subrelay)
    assert code == 2 and "configuration error" in out
    assert (user_env / ".codex" / "config.toml").read_bytes() == content
    assert not (user_env / ".codex" / "config.toml.subrelay-backup").exists()


@pytest.mark.parametrize("client,seen", [("openai-sdk", "lists 6 models"), ("anthropic-sdk", "counted")])
def test_sdk_variables_checked_with_the_real_sdk(user_env, subrelay, capsys, client, seen):
    code, out = _run(capsys, client, "--url", subrelay)
    assert code == 0, out
    assert out.startswith("export ") and f"{subrelay}" in out.splitlines()[0]
    assert seen in out


def test_a_symlinked_config_is_changed_where_it_lives(user_env, subrelay, capsys, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "aider.yml").write_bytes(b"dark-mode: true\n")
    (user_env / ".aider.conf.yml").symlink_to(dotfiles / "aider.yml")
    assert _run(capsys, "aider", "--url", subrelay, "--no-check")[0] == 0
    assert (user_env / ".aider.conf.yml").is_symlink()  # the link stays; its target holds the settings
    assert b"openai-api-base" in (dotfiles / "aider.yml").read_bytes()
    assert _run(capsys, "aider", "--undo")[0] == 0
    assert (user_env / ".aider.conf.yml").is_symlink() and (dotfiles / "aider.yml").read_bytes() == b"dark-mode: true\n"
    assert sorted(p.name for p in dotfiles.iterdir()) == ["aider.yml"]


@pytest.mark.parametrize("url", ["127.0.0.1:8787", "ftp://127.0.0.1:8787", "http://127.0.0.1:8787/v2", "http://:8787"])
def test_a_bad_url_is_refused(user_env, capsys, url):
    code, out = _run(capsys, "codex", "--url", url)
    assert code == 2 and "--url must be subrelay's address" in out
    assert not (user_env / ".codex").exists()
