"""docs/identity.md's examples, run: its subrelay.toml parses into the identity it describes, and its
shell examples work against a server started with that configuration."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

from proxy.config.file import parse_config
from proxy.server.app import create_app
from tests.mock_upstream import ServerThread
from tests.team.test_request_path import make_user

DOC = Path(__file__).parent.parent.parent / "docs" / "identity.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def test_the_documented_configuration_means_what_the_page_says():
    import tomllib

    (toml,) = _blocks("toml")
    identity = parse_config(tomllib.loads(toml)).identity
    assert identity.seal == "member" and identity.shared_account == "refuse"
    assert identity.oidc.issuer == "https://login.example.com" and "groups" in identity.oidc.scopes
    assert identity.trusted_header.from_proxy("127.0.0.1") and not identity.trusted_header.from_proxy("10.0.0.9")
    assert identity.admin_emails == ("ada@example.com",) and identity.create_members


def test_the_documented_shell_examples_run(proxy_settings, tmp_path):
    import tomllib

    (toml,) = _blocks("toml")
    settings = replace(proxy_settings, env={"SUBRELAY_STATE_DIR": str(tmp_path / "state")},
                       file=parse_config(tomllib.loads(toml)))
    key = make_user(settings.env, "lena")
    keys_example, header_example, audit_example = _blocks("sh")
    with ServerThread(create_app(settings)) as proxy:
        env = {**os.environ, "SUBRELAY": proxy.url, "KEY": key}
        made = subprocess.run(["bash", "-euo", "pipefail", "-c", keys_example], capture_output=True, text=True,
                              env=env, timeout=30)
        assert made.returncode == 0, made.stderr
        assert '"name":"laptop codex"' in made.stdout and '"key":"srk_' in made.stdout
        listed = subprocess.run(["bash", "-euo", "pipefail", "-c", header_example], capture_output=True, text=True,
                                env=env, timeout=30)
        assert listed.returncode == 0 and '"name":"lena"' in listed.stdout, listed.stdout
        audited = subprocess.run(["bash", "-euo", "pipefail", "-c", audit_example], capture_output=True, text=True,
                                 env=env, timeout=30)
        assert audited.returncode == 0, audited.stderr
        decoder = json.JSONDecoder()  # the two answers back to back (curl adds no newline)
        changed, end = decoder.raw_decode(audited.stdout)
        entry = decoder.raw_decode(audited.stdout[end:].lstrip())[0]["data"][0]
        assert changed["disabled"] is True
        assert (entry["actor"], entry["action"], entry["target"]) == (
            "header:ada@example.com from 127.0.0.1", "user.disable", "lena")
