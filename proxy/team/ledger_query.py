"""Reading the ledger and the audit log: one parser for the filters (the admin API, the member's own view
and the ``subrelay requests`` / ``subrelay audit`` commands take the same names and refuse the same input
the same way) and one export walk (CSV or JSON Lines, every matching entry, with its chain fields)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone

from proxy.errors import BadRequest
from proxy.observe.chain import csv_lines, jsonl_lines
from proxy.state.ledger import LedgerQuery, LedgerStore, status_range

MAX_LIMIT = 500
FORMATS = ("json", "csv", "jsonl")
FILTERS = {"requests": ("person", "model", "provider", "status", "since", "until", "cursor", "limit", "format"),
           "audit": ("actor", "action", "target", "since", "until", "cursor", "limit", "format")}
_CURSOR = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_query(log: str, params: Mapping[str, str]) -> tuple[LedgerQuery, str]:
    """(the query, the format) from request parameters or command options; a bad value is a 400."""
    unknown = sorted(set(params) - set(FILTERS[log]))
    if unknown:
        raise BadRequest(f"Unknown parameter {unknown[0]!r}; filters: {', '.join(FILTERS[log])}.", param=unknown[0],
                         code="unknown_parameter")
    query = LedgerQuery()
    for name in ("person", "model", "provider", "action", "target"):
        if params.get(name) is not None:
            setattr(query, name, _text(name, params[name]))
    if params.get("actor") is not None:
        query.person = _text("actor", params["actor"])
    if params.get("status") is not None:
        try:
            status_range(params["status"])
        except ValueError as exc:
            raise BadRequest(f"'status' {exc.args[0].partition(' ')[2]}.", param="status", code="invalid_value") from None
        query.status = params["status"]
    query.since = parse_time("since", params.get("since"))
    query.until = parse_time("until", params.get("until"), end_of_day=True)
    cursor = params.get("cursor")
    if cursor is not None:
        if not _CURSOR.fullmatch(cursor):
            raise BadRequest("'cursor' must be the next_cursor of a previous page.", param="cursor",
                             code="invalid_value")
        query.before = cursor
    limit = params.get("limit")
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise BadRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}.", param="limit", code="invalid_value")
        query.limit = int(limit)
    form = params.get("format") or "json"
    if form not in FORMATS:
        raise BadRequest("'format' must be json, csv or jsonl.", param="format", code="invalid_value")
    return query, form


def parse_time(name: str, value: str | None, *, end_of_day: bool = False) -> float | None:
    """A day (``2026-12-07``, the whole day for ``until``), an ISO time, or epoch seconds."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if _DAY.fullmatch(text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
            return day + 86400 if end_of_day else day
        if re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", text):
            return float(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    except ValueError:
        raise BadRequest(f"'{name}' must be a day (2026-12-07), an ISO time (2026-12-07T14:02:00Z) or epoch "
                         "seconds.", param=name, code="invalid_value") from None


def _text(name: str, value: str) -> str:
    if not 0 < len(value) <= 200 or not value.isprintable():
        raise BadRequest(f"'{name}' must be 1-200 printable characters.", param=name, code="invalid_value")
    return value


async def matching(store: LedgerStore, log: str, query: LedgerQuery, *, page_size: int = 500) -> AsyncIterator[dict]:
    """Every entry matching ``query`` (its limit ignored), newest first, one page at a time."""
    page_query = LedgerQuery(**{**{name: getattr(query, name) for name in LedgerQuery.__slots__}, "limit": page_size})
    while True:
        page = await store.page(log, page_query)
        for entry in page.entries:
            yield entry
        if page.next_cursor is None:
            return
        page_query.before = page.next_cursor


async def export(store: LedgerStore, log: str, query: LedgerQuery, form: str) -> AsyncIterator[str]:
    """The export text, piece by piece: CSV (a header, then a row per entry) or JSON Lines."""
    first = True
    batch: list[dict] = []
    async for entry in matching(store, log, query):
        batch.append(entry)
        if len(batch) >= 500:
            for text in (csv_lines(log, batch, header=first) if form == "csv" else jsonl_lines(log, batch)):
                yield text
            first, batch = False, []
    if batch or (first and form == "csv"):
        for text in (csv_lines(log, batch, header=first) if form == "csv" else jsonl_lines(log, batch)):
            yield text
