"""The ``subrelay`` command: ``serve`` runs the proxy; ``status`` shows what it can reach."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .config import Settings, check_bind_is_safe, settings_from_env
from .errors import ConfigError
from .redact import install_log_redaction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="subrelay", description="OpenAI-compatible proxy to the models you pay for.")
    parser.add_argument("--version", action="version", version=f"subrelay {__version__}")
    parser.add_argument("--config", help="path to subrelay.toml (env SUBRELAY_CONFIG)")
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the proxy (default)")
    serve_cmd.add_argument("--host", help="address to listen on (default 127.0.0.1, env SUBRELAY_HOST)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default 8787, env SUBRELAY_PORT)")
    serve_cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="env SUBRELAY_LOG_LEVEL")
    commands.add_parser("status", help="show each provider's credential state (no secrets)")
    args = parser.parse_args(argv)

    try:
        settings = settings_from_env(config_path=args.config)
        if args.command in (None, "serve"):
            settings = settings.with_overrides(
                host=getattr(args, "host", None), port=getattr(args, "port", None), log_level=getattr(args, "log_level", None)
            )
            return serve(settings)
        return status(settings)
    except ConfigError as exc:
        print(f"subrelay: configuration error: {exc}", file=sys.stderr)
        return 2


def serve(settings: Settings) -> int:
    from .app import create_app
    from .server import run

    check_bind_is_safe(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is noise
    app = create_app(settings)
    print(f"subrelay {__version__} listening on http://{settings.host}:{settings.port}/v1", file=sys.stderr)
    run(app, settings)
    return 0


def status(settings: Settings) -> int:
    """Print the credential inventory: provider, source, state, expiry — never a secret."""
    from .providers import build_inventory

    inventory = build_inventory(settings)
    rows = [("provider", "source", "state", "expiry")]
    for entry in inventory.statuses:
        state = entry.state + (f": {entry.detail}" if entry.detail and entry.state != "ok" else "")
        rows.append((entry.name, entry.source, state, entry.expiry))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
