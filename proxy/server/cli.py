"""The ``subrelay`` command: ``serve`` runs the proxy; ``status`` shows what it can reach."""

from __future__ import annotations

import argparse
import sys

from proxy import __version__
from proxy.config.settings import Settings, check_bind_is_safe, settings_from_env
from proxy.errors import ConfigError
from proxy.observe.redact import install_log_redaction


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # inside the try: a reader that left shows up here, not at exit
        return code
    except BrokenPipeError:  # `subrelay status --json | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and flag (the docs' examples are checked against it too)."""
    parser = argparse.ArgumentParser(prog="subrelay", description="OpenAI-compatible proxy to the models you pay for.")
    parser.add_argument("--version", action="version", version=f"subrelay {__version__}")
    parser.add_argument("--config", help="path to subrelay.toml (env SUBRELAY_CONFIG)")
    # --config is accepted after the subcommand too (`subrelay serve --config x.toml`), as people type it.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", default=argparse.SUPPRESS, help="path to subrelay.toml (env SUBRELAY_CONFIG)")
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the proxy (default)", parents=[after])
    serve_cmd.add_argument("--host", help="address to listen on (default 127.0.0.1, env SUBRELAY_HOST)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default 8787, env SUBRELAY_PORT)")
    serve_cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="env SUBRELAY_LOG_LEVEL")
    serve_cmd.add_argument("--log-format", choices=["text", "json"], help="env SUBRELAY_LOG_FORMAT (default text)")
    serve_cmd.add_argument("--workers", type=int, help="worker processes on one port (env SUBRELAY_WORKERS, default 1)")
    status_cmd = commands.add_parser("status", help="show each provider's state, the ChatGPT login and its usage",
                                     parents=[after])
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    login_cmd = commands.add_parser(
        "login", help="log in to your ChatGPT plan (shared with the Codex CLI)", parents=[after],
        epilog="The login is written where the Codex CLI keeps it (CODEX_AUTH_PATH, else $CODEX_HOME/auth.json, "
               "else ~/.codex/auth.json). SUBRELAY_AUTH_BASE_URL (default https://auth.openai.com) and "
               "SUBRELAY_LOGIN_PORT (default 1455) point the login elsewhere.")
    login_cmd.add_argument("--device", action="store_true", help="device-code login, for SSH sessions and containers")
    login_cmd.add_argument("--user", metavar="NAME",
                           help="team mode: log this user in (their login is sealed in the team store, theirs only)")
    login_cmd.add_argument("--with-access-token", action="store_true",
                           help="a Codex personal access token (at-...), read from stdin or CODEX_ACCESS_TOKEN "
                                "(never an argument: ps would show it)")
    login_cmd.add_argument("--no-browser", action="store_true", help="print the address instead of opening a browser")
    login_cmd.add_argument("--paste", action="store_true",
                           help="the browser runs elsewhere: paste the address it ends on")
    commands.add_parser("logout", help="remove the ChatGPT login", parents=[after])
    migrate_cmd = commands.add_parser("migrate-state", help="copy this host's team store into Redis (for replicas)",
                                      parents=[after])
    migrate_cmd.add_argument("--to", required=True, metavar="REDIS_URL", help="redis://[:password@]host:port/db or rediss://")
    prices_cmd = commands.add_parser("prices", help="the price table in effect (dollars per million tokens)",
                                     parents=[after])
    prices_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    from proxy.setup import command as setup_command
    from proxy.team import cli as team_cli
    from proxy.team import ledger_cli

    setup_command.add_command(commands, [after])
    from proxy.server.demo import add_command as add_demo

    add_demo(commands)
    team_cli.add_commands(commands)
    ledger_cli.add_commands(commands)
    return parser


def _run(args: argparse.Namespace) -> int:

    try:
        settings = settings_from_env(config_path=args.config)
        if args.command in (None, "serve"):
            settings = settings.with_overrides(
                host=getattr(args, "host", None), port=getattr(args, "port", None), log_level=getattr(args, "log_level", None),
                log_format=getattr(args, "log_format", None), workers=getattr(args, "workers", None),
            )
            return serve(settings)
        if args.command == "login":
            from proxy.account.login_command import login
            if args.with_access_token:
                from proxy.account.login_command import login_with_access_token
                return login_with_access_token(settings, user=args.user)
            return login(settings, device=args.device, no_browser=args.no_browser, paste=args.paste, user=args.user)
        if args.command == "logout":
            from proxy.login.cli import logout
            return logout(settings)
        if args.command == "prices":
            from proxy.money.table import print_prices
            return print_prices(settings.file.prices, as_json=args.json)
        if args.command == "setup":
            from proxy.setup.command import run as setup
            return setup(args, settings)
        if args.command == "demo":
            from proxy.server.demo import run as demo

            return demo(args, serve)
        if args.command == "migrate-state":
            from proxy.server.migrate_state import migrate_state
            return migrate_state(args.to, settings.env)
        from proxy.team import cli as team_cli

        if args.command in team_cli.COMMANDS:
            return team_cli.run(args, settings.env)
        from proxy.team import ledger_cli

        if args.command in ledger_cli.COMMANDS:
            return ledger_cli.run(args, settings.env)
        return status(settings, as_json=args.json)
    except ConfigError as exc:
        print(f"subrelay: configuration error: {exc}", file=sys.stderr)
        return 2


def serve(settings: Settings) -> int:
    from proxy.server.uvicorn import configure_logging, run, run_workers

    from proxy.server.uvicorn import PortInUse, bind

    from proxy.team.context import store_configured

    check_bind_is_safe(settings, team_mode=store_configured(settings.env))
    if settings.workers > 1 and settings.env.get("SUBRELAY_STATE_DIR"):
        from proxy.state.local.files import check_state_dir

        check_state_dir(settings.env["SUBRELAY_STATE_DIR"])  # before any worker starts: one clear error
    if settings.workers < 1 or settings.workers > 64:
        raise ConfigError(f"--workers must be between 1 and 64, got {settings.workers}")
    if not 1 <= settings.port <= 65535:
        raise ConfigError(f"--port (or SUBRELAY_PORT) must be between 1 and 65535, got {settings.port}")
    configure_logging(settings)
    install_log_redaction()
    app = None
    if settings.workers == 1:
        from proxy.server.app import create_app

        app = create_app(settings)  # a config or provider problem stops start-up before the port is taken
    try:
        sock = bind(settings)
    except PortInUse as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 1
    print(f"subrelay {__version__} listening on http://{_host_for_url(settings.host)}:{settings.port}/v1"
          f"{f' with {settings.workers} workers' if settings.workers > 1 else ''}", file=sys.stderr)
    if settings.workers > 1:
        _export_for_workers(settings)
        run_workers(settings, sock)
        return 0
    run(app, settings, sock)
    return 0


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _export_for_workers(settings: Settings) -> None:
    """Workers rebuild the settings from the environment: put the command line's choices there, and
    give them a shared directory for metrics and cooldowns."""
    import os
    import tempfile

    os.environ.update({"SUBRELAY_HOST": settings.host, "SUBRELAY_PORT": str(settings.port),
                       "SUBRELAY_LOG_LEVEL": settings.log_level, "SUBRELAY_LOG_FORMAT": settings.log_format,
                       "SUBRELAY_WORKERS": str(settings.workers)})
    if settings.file.path:
        os.environ["SUBRELAY_CONFIG"] = settings.file.path
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="subrelay-workers-")
    os.environ.setdefault("SUBRELAY_STATE_DIR", os.environ["PROMETHEUS_MULTIPROC_DIR"])


def status(settings: Settings, *, as_json: bool = False) -> int:
    """Print each provider's state, and the ChatGPT login with its usage windows — never a secret.
    Exits 1 when no provider is usable."""
    import asyncio

    import orjson

    from proxy.account.status import account_status

    report = asyncio.run(account_status(settings))
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0 if report["usable"] else 1
    rows = [("provider", "source", "state", "expiry")]
    for entry in report["providers"]:
        detail = entry["detail"]
        state = entry["state"] + ((f" ({detail})" if entry["state"] == "ok" else f": {detail}") if detail else "")
        rows.append((entry["name"], entry["source"], state, entry["expiry"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    login = report["chatgpt"]
    if login["connected"]:
        print(f"\nChatGPT: {login['account_email'] or '?'}, {str(login['plan'] or '?').capitalize()} plan, "
              f"account {login['account_id'] or '?'}{' (Codex access token)' if login.get('login') == 'access_token' else ''}")
        for window in login["usage"]["windows"] if login.get("usage") else ():
            print(f"  {window['name']:<8} {_bar(window['used_percent'])} {window['used_percent']:>3.0f}% used, "
                  f"resets {window['resets_at_text']}")
        if login.get("usage") and login["usage"].get("credits"):
            print(f"  credits: {login['usage']['credits']}")
        elif login.get("usage_error"):
            print(f"  usage: {login['usage_error']}")
    if "redis" in report:
        _print_redis(report["redis"])
    return 0 if report["usable"] else 1


def _print_redis(view: dict) -> None:
    """The Redis the replicas share: which node is the primary, its replicas and their lag."""
    print(f"\nRedis: {view.get('target', '?')}")
    if "primary" not in view:
        print(f"  unavailable: {view.get('error', '?')}")
        return
    state = "takes writes" if view.get("writable") else f"refuses writes: {view.get('error', '?')}"
    print(f"  {view['role']} {view['primary']}, {state}")
    for replica in view.get("replicas", ()):
        print(f"  replica {replica['address']} {replica['state']}, lag {replica['lag_seconds']} s, "
              f"{replica['behind_bytes']} bytes behind")
    if view.get("wait_replicas"):
        print(f"  logins, keys and removals wait for {view['wait_replicas']} replica(s): "
              f"{'yes' if view.get('durable') else 'NOT ENOUGH REPLICAS ONLINE'}")


def _bar(percent: float, width: int = 20) -> str:
    filled = max(0, min(width, round(percent / 100 * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


if __name__ == "__main__":
    raise SystemExit(main())
