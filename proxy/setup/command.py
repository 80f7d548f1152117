"""``subrelay setup CLIENT [--print | --undo]``: the command line of the setup package.

Exit status: 0 when the configuration is in place and the real client worked with it (or was
printed, or undone), 1 when the check failed (the reason is printed), 2 for a configuration error
(a client file this command will not edit safely, an unknown client).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping

from proxy.config.settings import Settings
from proxy.setup import aider, backups, claude_code, codex, opencode, sdk_env
from proxy.setup.options import Options
from proxy.setup.target import check_url, default_url, discover, resolve_key

CLIENTS: dict[str, Any] = {module.NAME: module for module in
                                  (codex, claude_code, opencode, aider, sdk_env.OPENAI, sdk_env.ANTHROPIC)}


def add_command(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "setup", parents=parents, help="configure a client (Codex CLI, Claude Code, opencode, aider, SDKs) for subrelay",
        description="Writes the client's own configuration for this subrelay (keeping a backup of what it "
                    "changes), then runs the real client with a request that costs nothing to check it.",
        epilog="The key written is SUBRELAY_API_KEY if set, else the first of SUBRELAY_API_KEYS, else a "
               "placeholder (keys off). Files follow the clients' own variables: CODEX_HOME, "
               "CLAUDE_CONFIG_DIR, XDG_CONFIG_HOME, HOME.")
    cmd.add_argument("client", choices=sorted(CLIENTS), help="the client to configure")
    mode = cmd.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", dest="print_only", help="print the configuration, change nothing")
    mode.add_argument("--undo", action="store_true", help="put back what the first setup changed")
    cmd.add_argument("--url", help="subrelay's address (default: from SUBRELAY_HOST/SUBRELAY_PORT, http://127.0.0.1:8787)")
    cmd.add_argument("--model", help="the model to use (default gpt-5.5 when subrelay serves it)")
    cmd.add_argument("--small-model", help="the fast model for background work (default gpt-5.4-mini)")
    cmd.add_argument("--no-check", action="store_true", help="write only; do not run the client")
    cmd.add_argument("--force", action="store_true",
                     help="with --undo: restore even though the file was edited after setup (those edits are lost)")


def run(args: argparse.Namespace, settings: Settings, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    client = CLIENTS[args.client]
    if args.undo:
        for path in client.paths(env):
            print(backups.undo(path, force=args.force))
        return 0
    key, source = resolve_key(settings, env)
    url = check_url(args.url or default_url(settings))
    target = discover(url, key, source)
    options = Options(model=args.model, small_model=args.small_model)
    if target.refused:
        print(f"subrelay setup: {target.problem}", file=sys.stderr)
        return 1
    if target.problem:
        print(f"subrelay setup: warning: {target.problem}; writing the defaults", file=sys.stderr)
    elif options.model and target.models and options.model not in target.models:
        print(f"subrelay setup: warning: subrelay does not list {options.model}; it may still route it",
              file=sys.stderr)
    if args.print_only:
        print(client.snippet(target, options, env), end="")
        return 0
    if not client.paths(env):  # nothing to write (the SDKs read variables): the lines to set are the output
        print(client.snippet(target, options, env), end="")
    for change in client.plan(target, options, env):
        if backups.apply(change):
            kept = backups.backup_of(backups.real_path(change.path))
            print(f"wrote {change.path}" + (f" (the previous one is kept as {kept.name})" if kept.exists() else ""))
        else:
            print(f"{change.path} is already set up for {target.url}: unchanged")
    for note in getattr(client, "NOTES", ()):
        print(note)
    if args.no_check:
        return 0
    if target.problem:
        print(f"check: not run: {target.problem}")
        return 1
    result = client.check(target, options, env)
    print(("check: ok" if result.ok else "check: FAILED") + "".join("\n" + line for line in result.lines))
    return 0 if result.ok else 1
