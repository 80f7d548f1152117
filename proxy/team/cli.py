"""The team commands: ``subrelay users …``, ``usage``, ``backup``, ``secret`` and ``rotate-secret``.

The rules (names, limits, duplicates) are :mod:`proxy.team.users`', the same the admin API applies, so
both refuse the same input with the same words. A refusal is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

COMMANDS = ("users", "usage", "backup", "secret", "rotate-secret")
NO_STORE = "no team store yet (run subrelay users add NAME)"
# Said once, when the first user makes team mode: from then on no request passes without a key, the
# owner's own included (they were locked out without a word before).
FIRST_USER_NOTICE = (
    "Team mode is on: from now on every request to this subrelay needs a key, yours too (a running server "
    "notices within seconds). Members send their own key; for your own requests (signed with your own "
    "ChatGPT login) set an owner key, e.g. SUBRELAY_API_KEYS=$(python3 -c 'import secrets; "
    "print(secrets.token_urlsafe(32))'), restart subrelay, and send that key. See docs/team-mode.md.")


class Refused(Exception):
    """A command that cannot do what was asked: its message is the one line printed."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser("users", help="team mode: people, their client keys and limits")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user and print their new client key (once)")
    add.add_argument("name")
    _limit_options(add)
    add.add_argument("--json", action="store_true", help="print {name, key, ...} as JSON")
    change = actions.add_parser("set", help="change a user's models or limits ('none' removes a limit)")
    change.add_argument("name")
    _limit_options(change, changing=True)
    listing = actions.add_parser("list", help="every user (key ids only, never keys)")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one user: limits, login, plan windows")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    for action, text in (("disable", "refuse the user's key from the next request"),
                         ("enable", "accept the user's key again"),
                         ("rotate-key", "give the user a new key (the old one stops working) and print it"),
                         ("remove", "remove the user, their key and their login")):
        actions.add_parser(action, help=text).add_argument("name")
    usage = commands.add_parser("usage", help="team mode: tokens and requests per user, day, model and provider")
    usage.add_argument("--user", help="one user's usage")
    usage.add_argument("--since", help="first day, YYYY-MM-DD (UTC)")
    usage.add_argument("--until", help="last day, YYYY-MM-DD (UTC)")
    usage.add_argument("--json", action="store_true")
    backup = commands.add_parser("backup", help="an online, consistent copy of the team store (0600)")
    backup.add_argument("path")
    commands.add_parser("secret", help="print a new value for SUBRELAY_SECRET_KEY")
    commands.add_parser("rotate-secret", help="re-seal every stored login under a new secret key")


def _limit_options(parser: argparse.ArgumentParser, *, changing: bool = False) -> None:
    none = " ('none': no limit)" if changing else ""
    parser.add_argument("--models", help=f"comma-separated model names or globs the user may call{none}")
    parser.add_argument("--rpm", help=f"requests per minute{none}")
    parser.add_argument("--tpm", help=f"tokens per minute{none}")
    parser.add_argument("--daily-tokens", help=f"tokens per UTC day{none}")
    parser.add_argument("--model-limit", action="append", metavar="GLOB:FIELD=N[,FIELD=N]",
                        help="limits for some models only, e.g. 'gpt-5.5*:rpm=10,tpm=100000' (repeat for several; "
                             "fields rpm, tpm, daily_tokens)" + ("; 'none' removes them all" if changing else ""))
    parser.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=None if changing else False,
                        help="may switch to a configured fallback before their plan's limit is hit")
    parser.add_argument("--budget", action="append", metavar="PERIOD[@PROVIDER]=DOLLARS",
                        help="a money budget, e.g. 'month=20' or 'day@team=2.50' (periods day, week, month, "
                             "rolling:7d; repeat for several)" + ("; 'PERIOD=none' removes one, 'none' all"
                                                                  if changing else ""))
    parser.add_argument("--max-concurrent", metavar="N",
                        help="their own cap on requests in flight (default SUBRELAY_USER_MAX_CONCURRENT)" + none)
    parser.add_argument("--max-effort", metavar="EFFORT",
                        help="the highest reasoning effort they may ask for (higher is capped)" + none)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run one team command; every refusal is one clear line and exit status 2, never a traceback."""
    from proxy.errors import ProxyError
    from proxy.state.team import StoreError
    from proxy.team.secretbox import SecretKeyError

    try:
        if args.command == "secret":
            return _secret()
        return asyncio.run(_dispatch(args, env))
    except ProxyError as exc:  # the admin API's words, with the command line's: 'none', not JSON's null
        return _refuse(exc.message.replace("(or null for", "(or none for"))
    except (Refused, StoreError, SecretKeyError) as exc:
        return _refuse(str(exc))


def _refuse(message: str) -> int:
    print(f"subrelay: {message}", file=sys.stderr)
    return 2


async def _dispatch(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from proxy.team.context import open_store, open_team

    if args.command == "users" and args.users_command == "add":
        from proxy.team.context import state_dir
        from proxy.team.secretbox import load_keys

        load_keys(env, state_dir(env))  # a malformed SUBRELAY_SECRET_KEY stops us before a store is made
        team = open_team(env, create=True)  # the store (and its secret key) start with the first user
        assert team is not None
        store = team.store
    else:
        store = open_store(env, create=False)
        if store is None:
            raise Refused(NO_STORE)
    audit = Auditor(env)
    try:
        if args.command == "users":
            return await _users(store, args, audit)
        if args.command == "usage":
            return await _usage(store, args)
        if args.command == "backup":
            return await _backup(store, args.path, env)
        code = await _rotate_secret(store, env)
        await audit("secret.rotate", None, "every stored login re-sealed under the new secret key"
                    + ("" if code == 0 else " (some could not be opened)"))
        return code
    finally:
        await audit.close()
        await store.close()


class Auditor:
    """A command's audit entries (who: :func:`proxy.hub.caller.local_identity`, via ``cli``); the ledger
    store is opened only when a change is made."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._ledger = None

    async def __call__(self, action: str, target: str | None, details: str = "") -> None:
        from proxy.hub.caller import local_identity
        from proxy.team.audit import record_action
        from proxy.team.context import open_ledger

        if self._ledger is None:
            self._ledger = open_ledger(self.env)
        await record_action(self._ledger, local_identity(), "cli", action, target, details)

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()


# -- users ---------------------------------------------------------------------------------------


async def _users(store, args: argparse.Namespace, audit: Auditor) -> int:
    from proxy.team import users
    from proxy.team.audit import change_action, change_details, user_details
    from proxy.team.views import user_view

    action = args.users_command
    if action == "add":
        first = not await store.has_users()
        user, key = await users.add_user(store, args.name, models=args.models, rpm=_number(args.rpm),
                                         tpm=_number(args.tpm), daily_tokens=_number(args.daily_tokens),
                                         fallback=args.fallback, model_limits=_model_limits(args.model_limit),
                                         budgets=_budgets(args.budget), max_effort=args.max_effort,
                                         max_concurrent=_number(args.max_concurrent))
        await audit("user.add", user.name, user_details(user))
        if args.json:
            _print_json({**user.public(), "key": key})
            return 0
        print(f"Added user {user.name} (key id {user.key_id}). Their client key, shown this once (store it now; "
              "subrelay keeps only its hash):")
        print(key)
        if first:
            print(FIRST_USER_NOTICE, file=sys.stderr)
        return 0
    if action == "set":
        changes: dict[str, Any] = {}
        if args.models is not None:
            changes["models"] = None if args.models.strip().lower() == "none" else args.models
        for field in ("rpm", "tpm", "daily_tokens", "max_concurrent"):
            raw = getattr(args, field)
            if raw is not None:
                changes[field] = None if raw.strip().lower() == "none" else _number(raw)
        if args.fallback is not None:
            changes["fallback"] = args.fallback
        if args.model_limit:
            changes["model_limits"] = None if args.model_limit == ["none"] else _model_limits(args.model_limit)
        if args.budget:
            changes["budgets"] = None if args.budget == ["none"] else _budgets(args.budget)
        if args.max_effort is not None:
            changes["max_effort"] = None if args.max_effort.strip().lower() == "none" else args.max_effort
        if not changes:
            raise Refused("nothing to change: give --models, --rpm, --tpm, --daily-tokens, --model-limit, "
                          "--budget, --max-effort or --[no-]fallback")
        before = await users.get_user(store, args.name)
        user = await users.change_user(store, args.name, changes)
        if change_details(before, user):
            await audit(change_action(before, user), user.name, change_details(before, user))
        print(f"Changed {user.name}: {_limits_text(user)}.")
        return 0
    if action == "list":
        return await _list(store, as_json=args.json)
    if action == "show":
        user = await users.get_user(store, args.name)
        view = await user_view(store, user)
        if args.json:
            _print_json(view)
        else:
            _print_show(view)
        return 0
    if action in ("disable", "enable"):
        before = await users.get_user(store, args.name)
        user = await users.change_user(store, args.name, {"disabled": action == "disable"})
        if change_details(before, user):
            await audit(change_action(before, user), user.name, change_details(before, user))
        print(f"Disabled {user.name}: their key is refused from the next request on." if user.disabled
              else f"Enabled {user.name}: their key works again.")
        return 0
    if action == "rotate-key":
        old = (await users.get_user(store, args.name)).key_id
        user, key = await users.rotate_key(store, args.name)
        await audit("user.rotate_key", user.name, f"new key id {user.key_id} (was {old})")
        print(f"New key for {user.name} (key id {user.key_id}); the old key is refused from now on. "
              "Shown this once:")
        print(key)
        return 0
    await users.remove_user(store, args.name)
    await audit("user.remove", args.name, "their key and their ChatGPT login removed")
    print(f"Removed {args.name}, their key and their ChatGPT login.")
    return 0


def _model_limits(options: list[str] | None) -> dict[str, Any] | None:
    """``--model-limit 'gpt-5.5*:rpm=10,tpm=100000'`` (repeatable) as the admin API's ``model_limits``."""
    if not options:
        return None
    limits: dict[str, Any] = {}
    for option in options:
        pattern, _, spec = option.rpartition(":")
        fields = dict(part.partition("=")[::2] for part in spec.split(",") if part)
        if not pattern or not fields:
            raise Refused(f"--model-limit {option!r}: write GLOB:FIELD=N[,FIELD=N], e.g. 'gpt-5.5*:rpm=10,tpm=100000'")
        limits[pattern] = {field.strip().replace("-", "_"): _number(value) for field, value in fields.items()}
    return limits


def _budgets(options: list[str] | None) -> dict[str, Any] | None:
    """``--budget month=20`` (repeatable) as the admin API's ``budgets`` (``month=none`` removes one)."""
    if not options:
        return None
    budgets: dict[str, Any] = {}
    for option in options:
        name, equals, amount = option.partition("=")
        if not equals or not name.strip() or not amount.strip():
            raise Refused(f"--budget {option!r}: write PERIOD[@PROVIDER]=DOLLARS, e.g. 'month=20' or 'day@team=2.50'")
        budgets[name.strip()] = None if amount.strip().lower() == "none" else amount.strip()
    return budgets


def _number(value: str | None) -> Any:
    """A limit from the command line: digits become an int; anything else goes to the shared check as is
    (which refuses it with the same words the admin API uses)."""
    if value is None or not re.fullmatch(r"[0-9]{1,15}", value.strip()):
        return value
    return int(value)


async def _list(store, *, as_json: bool) -> int:
    from proxy.team.views import user_view

    views = [await user_view(store, user) for user in await store.list_users()]
    if as_json:
        _print_json({"object": "list", "data": views})
        return 0
    if not views:
        print("No users yet (subrelay users add NAME).")
        return 0
    rows = [("name", "key id", "state", "models", "rpm", "tpm", "daily tokens", "fallback", "ChatGPT login")]
    for view in views:
        rows.append((view["name"], view["key_id"], "disabled" if view["disabled"] else "enabled",
                     ",".join(view["models"]) or "all", _or_dash(view["rpm"]), _or_dash(view["tpm"]),
                     _or_dash(view["daily_tokens"]), "yes" if view["fallback"] else "no", _login_text(view["login"])))
    print(_table(rows))
    return 0


def _print_show(view: dict[str, Any]) -> None:
    print(f"name          {view['name']}")
    print(f"key id        {view['key_id']}")
    print(f"state         {'disabled' if view['disabled'] else 'enabled'}")
    print(f"models        {','.join(view['models']) or 'all'}")
    print(f"limits        rpm {_or_dash(view['rpm'])}, tpm {_or_dash(view['tpm'])}, "
          f"daily tokens {_or_dash(view['daily_tokens'])}")
    print(f"fallback      {'yes' if view['fallback'] else 'no'}")
    print(f"max effort    {view.get('max_effort') or 'any'}")
    for budget in view.get("spend", []):
        print(f"budget        {budget['budget']}: ${budget['spent_usd']} of ${budget['budget_usd']} spent, "
              f"${budget['left_usd']} left")
    print(f"ChatGPT login {_login_text(view['login'])}")
    for window in view["plan_windows"]:
        print(f"  {window['name']:<10} {window['used_percent']:5.1f}% used")


def _login_text(login: dict[str, Any] | None) -> str:
    if login is None:
        return "none"
    text = f"{login.get('email') or '?'} ({login.get('plan_type') or '?'}, account {login.get('account_id') or '?'})"
    return text + (f", needs a new login: {login['needs_login']}" if login.get("needs_login") else "")


def _limits_text(user) -> str:
    per_model = "; ".join(f"{pattern}: " + ", ".join(f"{k} {v}" for k, v in limits.items())
                          for pattern, limits in user.model_limits.items())
    return (f"models {','.join(user.models) or 'all'}, rpm {_or_dash(user.rpm)}, tpm {_or_dash(user.tpm)}, "
            f"daily tokens {_or_dash(user.daily_tokens)}, fallback {'yes' if user.fallback else 'no'}"
            + (f", per model ({per_model})" if per_model else "")
            + (", budgets " + ", ".join(f"{name} ${amount}" for name, amount in user.budgets.items())
               if user.budgets else "")
            + (f", max effort {user.max_effort}" if user.max_effort else "")
            + (f", max concurrent {user.max_concurrent}" if user.max_concurrent else ""))


def _or_dash(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _print_json(value: Any) -> None:
    import orjson

    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


# -- usage, backup, secrets ---------------------------------------------------------------------------


async def _usage(store, args: argparse.Namespace) -> int:
    from proxy.team.usage_report import usage_report, usage_table

    report = await usage_report(store, user=args.user, since=args.since, until=args.until)
    if args.json:
        _print_json(report)
    elif not report["data"]:
        print("No usage recorded for that selection.")
    else:
        print(usage_table(report))
    return 0


async def _backup(store, path: str, env: Mapping[str, str]) -> int:
    import sqlite3

    from proxy.team.context import state_dir
    from proxy.team.secretbox import KEY_FILE

    if not hasattr(store, "backup"):
        raise Refused("backup copies the local SQLite store; with SUBRELAY_REDIS_URL use Redis's own snapshots")
    target = os.path.abspath(os.path.expanduser(path))
    if os.path.lexists(target):
        raise Refused(f"{path} exists already; backup never overwrites a file")
    if not os.path.isdir(os.path.dirname(target)):
        raise Refused(f"the directory for {path} does not exist")
    try:
        store.backup(target)
    except FileExistsError:
        raise Refused(f"{path} exists already; backup never overwrites a file") from None
    except (OSError, sqlite3.Error) as exc:  # a half-written copy is worse than none
        if os.path.exists(target):
            os.unlink(target)
        raise Refused(f"the backup to {path} failed: {exc}") from None
    users = len(await store.list_users())
    key = "SUBRELAY_SECRET_KEY" if env.get("SUBRELAY_SECRET_KEY") else os.path.join(state_dir(env), KEY_FILE)
    print(f"Backed up the team store ({users} user{'s' if users != 1 else ''}) to {target} (mode 0600).")
    print(f"The logins in it are sealed: keep the secret key ({key}) too, stored apart from the backup.")
    return 0


def _secret() -> int:
    from proxy.team.secretbox import new_secret

    print("A new secret key: set it as SUBRELAY_SECRET_KEY on every replica (and keep it safe: losing it "
          "loses every stored login).", file=sys.stderr)
    print(new_secret())
    return 0


async def _rotate_secret(store, env: Mapping[str, str]) -> int:
    from proxy.team.context import state_dir
    from proxy.team.rotate_secret import rotate_env_key, rotate_key_file

    if env.get("SUBRELAY_SECRET_KEY"):
        rotation = await rotate_env_key(store, env, state_dir(env))
        opened = "SUBRELAY_SECRET_KEY_PREVIOUS" if env.get("SUBRELAY_SECRET_KEY_PREVIOUS") else "the keys known"
        print(f"Re-sealed {rotation.result.resealed} login(s) under SUBRELAY_SECRET_KEY (key id {rotation.key_id}), "
              f"opened with {opened}; {rotation.result.current} were sealed with it already. subrelay cannot change "
              "an environment variable: the new key is the one you set. Once every replica runs with it, remove "
              "SUBRELAY_SECRET_KEY_PREVIOUS.")
    else:
        rotation = await rotate_key_file(store, env, state_dir(env))
        print(f"Re-sealed {rotation.result.resealed} login(s) under a new secret key (key id {rotation.key_id}); "
              f"{rotation.key_file} now holds only the new key. Restart subrelay so it uses it.")
    if rotation.result.unopenable:
        names = ", ".join(rotation.result.unopenable)
        hint = (" (set SUBRELAY_SECRET_KEY_PREVIOUS to the key that sealed them and run again)"
                if rotation.mode == "env" else "")
        return _refuse(f"the login(s) of {names} are sealed with a key that is not known{hint}; "
                       "otherwise they must log in again")
    return 0
