"""aider: ``~/.aider.conf.yml`` (aider reads it from ``$HOME``, then the git root, then the directory).

Its keys are aider's long options (aider.chat/docs/llms/openai-compat.html): ``openai-api-base``,
``openai-api-key``, and ``model`` / ``weak-model`` with the ``openai/`` prefix that sends them to an
OpenAI-compatible endpoint. Only those top-level lines are changed; the rest of the file keeps its
bytes. aider has no request that costs nothing, so the check is setup's own ``GET /v1/models`` with
the same address and key, and ``aider --version`` when aider is installed; the report says so.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

from proxy.errors import ConfigError
from proxy.setup import probe
from proxy.setup.backups import FileChange, read_text
from proxy.setup.options import Options
from proxy.setup.target import DEFAULT_MODEL, DEFAULT_SMALL_MODEL, Target

NAME = "aider"


def config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".aider.conf.yml"


def paths(env: Mapping[str, str]) -> list[Path]:
    return [config_path(env)]


def _values(target: Target, options: Options) -> dict[str, str]:
    return {"openai-api-base": target.v1, "openai-api-key": target.key,
            "model": "openai/" + target.pick(options.model, DEFAULT_MODEL),
            "weak-model": "openai/" + target.pick(options.small_model, DEFAULT_SMALL_MODEL, small=True)}


def set_yaml_keys(text: str, values: dict[str, str]) -> str:
    """Top-level ``key: value`` lines set (a JSON string is a YAML double-quoted scalar); others kept."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)}\s*:(.*)$")
        found = [i for i, line in enumerate(lines) if pattern.match(line.rstrip("\n"))]
        rendered = f"{key}: {json.dumps(value)}\n"
        if found and not pattern.match(lines[found[0]].rstrip("\n")).group(1).strip():
            raise ConfigError(f"its `{key}` is not a single-line value; set it by hand")
        if found:
            lines[found[0]] = rendered
        else:
            lines.append(rendered)
    return "".join(lines)


def plan(target: Target, options: Options, env: Mapping[str, str]) -> list[FileChange]:
    path = config_path(env)
    text = set_yaml_keys(read_text(path), _values(target, options))
    try:
        import yaml  # optional: checks the result when PyYAML is there
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} would not be valid YAML ({exc}); set it up by hand") from None
        if not isinstance(loaded, dict) or any(loaded.get(k) != v for k, v in _values(target, options).items()):
            raise ConfigError(f"{path} is laid out in a way this command cannot change safely; set it up by hand")
    return [FileChange(path, text.encode("utf-8"), secret=target.keys_on)]


def snippet(target: Target, options: Options, env: Mapping[str, str]) -> str:
    return f"# {config_path(env)}\n" + set_yaml_keys("", _values(target, options))


def check(target: Target, options: Options, env: Mapping[str, str]) -> probe.CheckResult:
    lines = [f"GET {target.v1}/models with this key: {len(target.models)} models"]
    aider = probe.find("aider", env)
    if aider is None:
        return probe.CheckResult(True, lines + ["`aider` is not on PATH, so aider itself was not run"])
    ran = probe.run([aider, "--version"], env, timeout=60)
    if isinstance(ran, str) or ran.returncode != 0:
        detail = ran if isinstance(ran, str) else probe.tail(ran.stderr + ran.stdout)
        return probe.CheckResult.failed(f"aider could not read its configuration: {detail}")
    return probe.CheckResult(True, lines + [f"aider {ran.stdout.strip()} starts with this configuration "
                                            "(no turn was run: aider has no request that costs nothing)"])
