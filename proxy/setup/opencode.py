"""opencode: a ``subrelay`` provider in ``$XDG_CONFIG_HOME/opencode/opencode.json`` (else ``~/.config``).

The shape opencode documents for an OpenAI-compatible endpoint (opencode.ai/docs/providers): a
provider with ``"npm": "@ai-sdk/openai-compatible"``, ``options.baseURL`` and ``options.apiKey``, and
its ``models`` (each with ``limit.context`` from the model's catalogue entry when there is one);
``model`` and ``small_model`` name ``subrelay/<model>``. The Chat Completions door serves it.

The check: ``opencode models subrelay`` (opencode loads the provider and lists its models; no
request), after setup itself asked ``GET /v1/models`` with the same address and key. opencode has
no request that costs nothing, so a turn is not run; the report says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from proxy.errors import ConfigError
from proxy.setup import probe
from proxy.setup.backups import FileChange, json_change, load_json_object
from proxy.setup.options import Options
from proxy.setup.target import DEFAULT_MODEL, DEFAULT_SMALL_MODEL, Target

NAME = "opencode"
PROVIDER = "subrelay"
OUTPUT_LIMIT = 128_000  # the GPT-5 family's output cap; opencode sends 0 for a custom model without one


def config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or os.path.expanduser("~")) / ".config")
    return Path(base) / "opencode" / "opencode.json"


def paths(env: Mapping[str, str]) -> list[Path]:
    return [config_path(env)]


def _provider(target: Target, options: Options) -> tuple[dict[str, Any], str, str]:
    main = target.pick(options.model, DEFAULT_MODEL)
    small = target.pick(options.small_model, DEFAULT_SMALL_MODEL, small=True)
    models: dict[str, Any] = {}
    for slug in dict.fromkeys([main, small, *target.models]):
        entry: dict[str, Any] = {"name": slug}
        window = target.context_window(slug)
        if window:
            entry["limit"] = {"context": window, "output": min(OUTPUT_LIMIT, window)}
        models[slug] = entry
    provider = {"npm": "@ai-sdk/openai-compatible", "name": "subrelay",
                "options": {"baseURL": target.v1, "apiKey": target.key}, "models": models}
    return provider, main, small


def plan(target: Target, options: Options, env: Mapping[str, str]) -> list[FileChange]:
    path = config_path(env)
    if not path.exists() and path.with_suffix(".jsonc").exists():
        raise ConfigError(f"{path.with_suffix('.jsonc')} has comments this command would lose; add the "
                          f"provider by hand (`subrelay setup opencode --print` shows it)")
    config = load_json_object(path, "provider", {"$schema": "https://opencode.ai/config.json"})
    provider, main, small = _provider(target, options)
    config["provider"][PROVIDER] = provider
    config["model"], config["small_model"] = f"{PROVIDER}/{main}", f"{PROVIDER}/{small}"
    return [json_change(path, config, secret=target.keys_on)]


def snippet(target: Target, options: Options, env: Mapping[str, str]) -> str:
    provider, main, small = _provider(target, options)
    shown = {"provider": {PROVIDER: provider}, "model": f"{PROVIDER}/{main}", "small_model": f"{PROVIDER}/{small}"}
    return f"// {config_path(env)}\n" + json.dumps(shown, indent=2) + "\n"


def check(target: Target, options: Options, env: Mapping[str, str]) -> probe.CheckResult:
    lines = [f"GET {target.v1}/models with this key: {len(target.models)} models"]
    opencode = probe.find("opencode", env)
    if opencode is None:
        return probe.CheckResult(True, lines + ["`opencode` is not on PATH, so opencode itself was not run"])
    ran = probe.run([opencode, "models", PROVIDER], env)
    if isinstance(ran, str):
        return probe.CheckResult.failed(ran)
    main = f"{PROVIDER}/{target.pick(options.model, DEFAULT_MODEL)}"
    if ran.returncode != 0 or main not in ran.stdout:
        return probe.CheckResult.failed(f"`opencode models {PROVIDER}` (exit {ran.returncode}) does not list {main}:\n    "
                                        + probe.tail(ran.stderr + ran.stdout))
    return probe.CheckResult(True, lines + [f"opencode models: opencode loads the provider and lists {main} "
                                            "(no turn was run: opencode has no request that costs nothing)"])
