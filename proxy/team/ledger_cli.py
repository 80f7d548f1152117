"""The ledger in the terminal: ``subrelay requests`` and ``subrelay audit`` (a table, or CSV / JSON Lines
with ``--format``), and ``subrelay ledger verify [FILE]``, which checks the store's chains or an export.

The filters are the admin API's (:mod:`proxy.team.ledger_query`), so both refuse the same input the same way.
``verify`` exits 0 when every chain checks, 1 when one does not (the first problem is printed), 2 when it
cannot read what it was given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

COMMANDS = ("requests", "audit", "ledger")


def add_commands(commands: argparse._SubParsersAction) -> None:
    for log, text in (("requests", "the request ledger: who asked for which model, routed where, at what cost"),
                      ("audit", "the audit log of admin actions: who changed what, when, through which surface")):
        parser = commands.add_parser(log, help=text)
        if log == "requests":
            parser.add_argument("--person", help="a user's name (or owner:<key id>)")
            parser.add_argument("--model", help="the requested or the resolved model")
            parser.add_argument("--provider")
            parser.add_argument("--status", help="a code (429), a class (4xx), ok or error")
        else:
            parser.add_argument("--actor", help="the credential, e.g. 'admin key from 127.0.0.1'")
            parser.add_argument("--action", help="e.g. user.disable, user.rotate_key, user.change")
            parser.add_argument("--target", help="the user acted on")
        parser.add_argument("--since", help="a day (2026-12-07), an ISO time or epoch seconds")
        parser.add_argument("--until", help="the same; a day means up to its end")
        parser.add_argument("--limit", default="20", help="entries to show in the table (default 20; --format "
                                                          "csv/jsonl exports every matching entry)")
        parser.add_argument("--format", choices=("table", "csv", "jsonl", "json"), default="table")
    ledger = commands.add_parser("ledger", help="the request ledger's hash chains")
    actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the chains in the store, or an export (CSV or JSON Lines)")
    verify.add_argument("file", nargs="?", help="an export from /api/admin/requests or /api/admin/audit "
                                                "(format=csv or jsonl); without it, the store's own chains")
    verify.add_argument("--filtered", action="store_true",
                        help="the export was made with filters: check every entry, allow gaps between them")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import asyncio

    from proxy.errors import ProxyError
    from proxy.state.team import StoreError

    try:
        if args.command == "ledger":
            return asyncio.run(_verify(args, env))
        return asyncio.run(_show(args, env))
    except ProxyError as exc:
        print(f"subrelay: {exc.message}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"subrelay: {exc}", file=sys.stderr)
        return 2


def _store(env: Mapping[str, str]):
    import os

    from proxy.team.context import LEDGER_FILE, open_ledger, state_dir

    if not env.get("SUBRELAY_REDIS_URL") and not os.path.exists(os.path.join(state_dir(env), LEDGER_FILE)):
        return None
    return open_ledger(env)


async def _show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from proxy.team.ledger_query import FILTERS, export, parse_query

    log = args.command
    params = {name: str(getattr(args, name)) for name in FILTERS[log]
              if getattr(args, name, None) is not None and name not in ("format", "cursor")}
    form = args.format if args.format in ("csv", "jsonl") else "json"
    query, _ = parse_query(log, {**params, "format": form})
    store = _store(env)
    if store is None:
        print(f"No {'requests' if log == 'requests' else 'admin actions'} recorded yet.", file=sys.stderr)
        return 0
    try:
        if form != "json":
            async for text in export(store, log, query, form):
                sys.stdout.write(text)
            return 0
        page = await store.page(log, query)
    finally:
        await store.close()
    if args.format == "json":
        import orjson

        print(orjson.dumps({"object": "list", "data": page.entries, "next_cursor": page.next_cursor},
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    if not page.entries:
        print("Nothing recorded for that selection.")
        return 0
    print(_table(log, page.entries))
    if page.next_cursor is not None:
        print(f"(the newest {len(page.entries)}; --limit for more, --format csv for all)")
    return 0


def _table(log: str, entries: list[dict]) -> str:
    if log == "requests":
        header = ("time", "person", "door", "model", "route", "status", "tokens in/out", "cost", "ttfb ms", "decision")
        rows = [(e["time"][:19].replace("T", " "), e["person"] or "-", e["door"] or "-", e["model"] or "-",
                 e["route"] or "-", f"{e['status']}" + (f" {e['error']}" if e.get("error") else ""),
                 f"{_n(e['input_tokens'])}/{_n(e['output_tokens'])}",
                 "-" if e.get("cost") is None else f"${e['cost']:.4f}", _n(e.get("ttfb_ms")),
                 e.get("decision") or "first route") for e in entries]
    else:
        header = ("time", "actor", "via", "action", "target", "details")
        rows = [(e["time"][:19].replace("T", " "), e["actor"] or "-", e["via"] or "-", e["action"] or "-",
                 e["target"] or "-", e.get("details") or "") for e in entries]
    table = [header, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table)


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


async def _verify(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from proxy.observe.chain import GENESIS, ChainCheck, read_export, verify
    from proxy.state.ledger import LOGS

    if args.file:
        try:
            with open(args.file, encoding="utf-8", newline="") as file:
                log, entries = read_export(file.read())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"subrelay: cannot read {args.file}: {exc}", file=sys.stderr)
            return 2
        verdict = verify(log, entries, contiguous=not args.filtered)
        print(f"{args.file}: " + verdict.text(log))
        return 0 if verdict.ok else 1
    store = _store(env)
    if store is None:
        print("No ledger here yet (nothing recorded).")
        return 0
    failed = False
    try:
        for log in LOGS:
            check = ChainCheck(log)
            first: dict | None = None
            batch, cursor = await store.chain(log)
            while True:
                first = first or (batch[0] if batch else None)
                if not all(check.feed(entry) for entry in batch) or cursor is None:
                    break
                batch, cursor = await store.chain(log, cursor)
            verdict = check.verdict
            seq, head, cut_seq, cut_hash = await store.head(log)
            if verdict.ok and first and (first["seq"] != cut_seq + 1 or first["prev"] != cut_hash):
                verdict.ok, verdict.problem = False, (f"the first entry (seq {first['seq']}) does not follow "
                                                      f"what retention cut (seq {cut_seq})")
            if verdict.ok and first and (verdict.last_seq, verdict.head) != (seq, head):
                verdict.ok, verdict.problem = False, f"the log's head (seq {seq}) is not its last entry"
            if verdict.ok and not first and cut_hash == GENESIS and seq:
                verdict.ok, verdict.problem = False, f"the head says seq {seq} but the log is empty"
            print(verdict.text(log))
            failed |= not verdict.ok
    finally:
        await store.close()
    return 1 if failed else 0
