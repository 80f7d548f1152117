"""Claude Code: the ``env`` block of ``$CLAUDE_CONFIG_DIR/settings.json`` (else ``~/.claude/settings.json``).

Claude Code applies that block to itself at start, over the shell's variables (checked with
2.1.332: a shell's ``ANTHROPIC_BASE_URL`` elsewhere does not win), so no shell needs them. The key goes in
``ANTHROPIC_AUTH_TOKEN`` (sent as ``Authorization: Bearer``; unlike ``ANTHROPIC_API_KEY`` it needs no
interactive "use this API key?" approval and wins over a claude.ai login). Every model slot Claude
Code has (``ANTHROPIC_MODEL``, the Opus/Sonnet/Haiku defaults, the small fast model) names a model
subrelay serves, so ``/model`` never picks a name that answers 404.

``CLAUDE_CODE_MAX_CONTEXT_TOKENS``: Claude Code 2.1.332 takes it as the window of a model it does not
know (it assumes 1M tokens otherwise, and says so), and ignores it for Claude names; so it is written
from the models' catalogue entries (the smallest window of the slots) when no slot is a Claude name.

The check costs nothing: ``claude -p /context`` counts the context with ``POST
/v1/messages/count_tokens`` (estimated locally by subrelay for non-Claude models); its debug output
says whether each count reached subrelay, and why not.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

from proxy.setup import probe
from proxy.setup.backups import FileChange, json_change, load_json_object
from proxy.setup.options import Options
from proxy.setup.target import DEFAULT_MODEL, DEFAULT_SMALL_MODEL, Target

NAME = "claude-code"


def settings_path(env: Mapping[str, str]) -> Path:
    if env.get("CLAUDE_CONFIG_DIR"):
        return Path(env["CLAUDE_CONFIG_DIR"]) / "settings.json"
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".claude" / "settings.json"


def paths(env: Mapping[str, str]) -> list[Path]:
    return [settings_path(env)]


def env_block(target: Target, options: Options) -> dict[str, str]:
    main = target.pick(options.model, DEFAULT_MODEL)
    small = target.pick(options.small_model, DEFAULT_SMALL_MODEL, small=True)
    block = {"ANTHROPIC_BASE_URL": target.url, "ANTHROPIC_AUTH_TOKEN": target.key, "ANTHROPIC_MODEL": main,
             "ANTHROPIC_DEFAULT_OPUS_MODEL": main, "ANTHROPIC_DEFAULT_SONNET_MODEL": main,
             "ANTHROPIC_DEFAULT_HAIKU_MODEL": small, "ANTHROPIC_SMALL_FAST_MODEL": small}
    windows = [target.context_window(model) for model in {main, small}]
    if not any(model.lower().startswith("claude") for model in (main, small)) and all(windows):
        block["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] = str(min(w for w in windows if w))
    return block


def plan(target: Target, options: Options, env: Mapping[str, str]) -> list[FileChange]:
    path = settings_path(env)
    settings = load_json_object(path, "env", {})
    settings["env"].update(env_block(target, options))
    return [json_change(path, settings, secret=target.keys_on)]


def snippet(target: Target, options: Options, env: Mapping[str, str]) -> str:
    return f"// {settings_path(env)}\n" + json.dumps({"env": env_block(target, options)}, indent=2) + "\n"


_REQUEST = re.compile(r"\[API REQUEST\] /v1/messages/count_tokens")
_FAILED = re.compile(r"countTokens API call failed: (.*)$", re.MULTILINE)
_TOKENS = re.compile(r"\*\*Tokens:\*\* ([\d.]+k?) / ([\d.]+[km]?)")


def check(target: Target, options: Options, env: Mapping[str, str]) -> probe.CheckResult:
    claude = probe.find("claude", env)
    if claude is None:
        return probe.CheckResult.failed("`claude` is not on PATH: the settings are written, but Claude Code "
                                        "itself could not be run to check them")
    ran = probe.run([claude, "-p", "/context", "--debug-to-stderr", "--no-session-persistence"], env)
    if isinstance(ran, str):
        return probe.CheckResult.failed(ran)
    failures = sorted(set(_FAILED.findall(ran.stderr)))
    if failures:
        return probe.CheckResult.failed(
            f"Claude Code could not count tokens at {target.url}/v1/messages/count_tokens: "
            + "; ".join(failures)[:500])
    if ran.returncode != 0 or not _REQUEST.search(ran.stderr):
        return probe.CheckResult.failed(
            f"`claude -p /context` (exit {ran.returncode}) sent no count_tokens request to subrelay:\n    "
            + probe.tail(ran.stdout + "\n" + "\n".join(l for l in ran.stderr.splitlines() if "[DEBUG]" not in l)))
    lines = [f"claude -p /context: Claude Code counted its context through {target.url}"]
    window = _TOKENS.search(ran.stdout)
    if window:
        lines.append(f"  it uses {env_block(target, options)['ANTHROPIC_MODEL']} with a context window of "
                     f"{window.group(2)} tokens")
    return probe.CheckResult(True, lines)

