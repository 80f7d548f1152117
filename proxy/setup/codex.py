"""The Codex CLI: a ``subrelay`` provider block in ``$CODEX_HOME/config.toml`` (else ``~/.codex``).

Keys as codex-rs reads them (``model-provider-info/src/lib.rs``, ``ModelProviderInfo``): ``base_url``,
``wire_api = "responses"``, ``experimental_bearer_token`` (sent as ``Authorization: Bearer``; Codex
asks a provider for its model list only when it has a key, and this one needs no variable set in
every shell) and ``model_catalog_url``, without which Codex never reads subrelay's model list
(``models-manager``, ``should_refresh_models``) and runs unknown models on fallback metadata.

The check costs nothing: ``codex doctor --network-only`` (a ``HEAD`` of ``/v1/responses`` and a
``GET`` of the model route) and ``codex debug models`` (Codex fetches the list from
``model_catalog_url`` and prints what it would use).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from proxy.errors import ConfigError
from proxy.setup import probe
from proxy.setup.backups import FileChange, read_text
from proxy.setup.options import Options
from proxy.setup.target import DEFAULT_MODEL, Target
from proxy.setup.tomledit import set_keys

NAME = "codex"
PROVIDER = "subrelay"


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("CODEX_HOME"):
        return Path(env["CODEX_HOME"]) / "config.toml"
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".codex" / "config.toml"


def paths(env: Mapping[str, str]) -> list[Path]:
    return [config_path(env)]


def _values(target: Target, options: Options) -> tuple[dict, dict]:
    top = {"model": target.pick(options.model, DEFAULT_MODEL), "model_provider": PROVIDER}
    block = {"name": "openai", "base_url": target.v1, "wire_api": "responses",
             "experimental_bearer_token": target.key, "model_catalog_url": f"{target.v1}/models"}
    return top, block


def plan(target: Target, options: Options, env: Mapping[str, str]) -> list[FileChange]:
    path = config_path(env)
    top, block = _values(target, options)
    try:
        text = set_keys(read_text(path), top, f"model_providers.{PROVIDER}", block, remove_from_table=("env_key",))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return [FileChange(path, text.encode("utf-8"), secret=target.keys_on)]


def snippet(target: Target, options: Options, env: Mapping[str, str]) -> str:
    top, block = _values(target, options)
    return f"# {config_path(env)}\n" + set_keys("", top, f"model_providers.{PROVIDER}", block)


def check(target: Target, options: Options, env: Mapping[str, str]) -> probe.CheckResult:
    codex = probe.find("codex", env)
    if codex is None:
        return probe.CheckResult.failed("`codex` is not on PATH: the configuration is written, but the CLI "
                                        "itself could not be run to check it")
    lines: list[str] = []
    doctor = probe.run([codex, "doctor", "--network-only", "--json"], env)
    if isinstance(doctor, str):
        return probe.CheckResult.failed(doctor)
    problems = _doctor_problems(doctor.stdout)
    if problems:
        return probe.CheckResult.failed("`codex doctor` says:", *problems)
    lines.append(f"codex doctor: {target.v1} is reachable with this provider" if problems is not None else
                 f"codex doctor gave no report (exit {doctor.returncode}; a Codex without it?): the model list decides")
    listed = probe.run([codex, "debug", "models"], env)
    if isinstance(listed, str):
        return probe.CheckResult.failed(listed)
    try:
        slugs = [m["slug"] for m in json.loads(listed.stdout)["models"]]
    except (ValueError, KeyError, TypeError):
        return probe.CheckResult.failed(f"`codex debug models` failed (exit {listed.returncode}):\n    "
                                        + probe.tail(listed.stderr + listed.stdout))
    if not target.catalogue:
        lines.append("subrelay has no Codex model catalogue (no ChatGPT login), so Codex keeps its own list")
        return probe.CheckResult(True, lines)
    if set(slugs) != set(target.catalogue):
        missing = sorted(set(target.catalogue) - set(slugs))[:5]
        return probe.CheckResult.failed(
            f"Codex did not take its model list from {target.v1}/models (it lists {len(slugs)} models, "
            f"subrelay serves {len(target.catalogue)}; missing e.g. {', '.join(missing) or '-'}): another "
            f"`model_provider` or a profile in {config_path(env)} may be in effect, or the key was refused")
    lines.append(f"codex debug models: Codex reads subrelay's list ({len(slugs)} models)")
    return probe.CheckResult(True, lines)


def _doctor_problems(stdout: str) -> list[str] | None:
    """Each failed doctor check as one line (summary, details, remedy); None when unreadable."""
    start = stdout.find("{")
    try:
        report = json.loads(stdout[start:]) if start >= 0 else None
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("checks"), dict):
        return None
    problems = []
    for check in report["checks"].values():
        if check.get("status") in ("ok", "skipped", "info"):
            continue
        details = "; ".join(f"{k}: {v}" for k, v in (check.get("details") or {}).items())
        remedy = f" (fix: {check['remediation']})" if check.get("remediation") else ""
        problems.append(f"  {check.get('id')}: {check.get('summary')}" + (f" [{details}]" if details else "") + remedy)
    return problems
