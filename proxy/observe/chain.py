"""The hash chain of the request ledger and the audit log, and their exports (pure: no I/O).

Every entry of a log carries the SHA-256 of the entry before it, so an export proves that no entry in its
range was dropped, inserted, reordered or edited: change one cell and its hash no longer matches; drop one
and the next entry's link (or its sequence number) breaks. An entry's hash covers the log's name, its
sequence number, the hash before it and its *cells*: every field as the text a CSV export holds (``None``
is empty, a number its shortest form). So the same check runs on the store, on a CSV export and on a JSON
Lines export, and a record edited in a spreadsheet fails it.

What a chain cannot show on its own: entries cut from its *oldest* end (retention does exactly that; the
first entry's ``prev`` then names what came before) or from its newest end. ``verify`` reports the range
and the head hash, to compare with the live store's (``subrelay ledger verify``) or a head kept elsewhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

GENESIS = "0" * 64  # the ``prev`` of a log's first entry
# What one model request leaves: never content (no prompt, no answer, no header value but the client's name).
REQUEST_FIELDS = ("time", "person", "door", "model", "upstream_model", "route", "provider", "decision", "status",
                  "error", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "cost", "ttfb_ms",
                  "total_ms", "request_id", "client", "client_version")
# What one admin action leaves: who (which credential, from where), through which surface, what, to whom.
AUDIT_FIELDS = ("time", "actor", "via", "action", "target", "details")
FIELDS = {"requests": REQUEST_FIELDS, "audit": AUDIT_FIELDS}
CHAIN_FIELDS = ("seq", "prev", "hash")


def cell(value: object) -> str:
    """A field as the text its CSV cell holds (and its hash covers)."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def entry_hash(log: str, seq: int, prev: str, cells: Iterable[str]) -> str:
    """The hash of one entry: its log, position, predecessor and cells, JSON-encoded (unambiguous)."""
    return hashlib.sha256(orjson.dumps([log, seq, prev, *cells])).hexdigest()


def cells_of(log: str, entry: dict) -> list[str]:
    return cells_from([entry.get(name) for name in FIELDS[log]])


def cells_from(values: list) -> list[str]:
    """The cells of an entry's fields (in the log's order): :func:`cell` with the common types inline
    (``bool`` is not ``int`` here); this runs for every entry written and checked."""
    return [value if type(value) is str else "" if value is None else str(value) if type(value) is int
            else cell(value) for value in values]


def link(log: str, head_seq: int, head_hash: str, entries: list[dict]) -> tuple[int, str]:
    """Give ``entries`` (in order) their ``seq``, ``prev`` and ``hash`` after the head; the new head."""
    return linked(log, head_seq, head_hash, entries)[0]


def linked(log: str, head_seq: int, head_hash: str, entries: list[dict]) -> tuple[tuple[int, str], list[list]]:
    """:func:`link`, and each entry's fields in the log's order (what a store keeps as the entry's cells,
    read once here for the hash and the store both)."""
    seq, prev = head_seq, head_hash
    names = FIELDS[log]
    rows = []
    for entry in entries:
        seq += 1
        entry["seq"], entry["prev"] = seq, prev
        values = [entry.get(name) for name in names]
        entry["hash"] = prev = entry_hash(log, seq, prev, cells_from(values))
        rows.append(values)
    return (seq, prev), rows


@dataclass(slots=True)
class Verdict:
    ok: bool
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_prev: str | None = None
    head: str | None = None
    problem: str | None = None

    def text(self, log: str) -> str:
        if not self.ok:
            return f"{log}: FAILED: {self.problem}"
        if not self.entries:
            return f"{log}: empty (nothing to check)"
        start = ("from the first entry" if self.first_prev == GENESIS
                 else f"from seq {self.first_seq} (earlier entries cut by retention or the export's range; "
                      f"before it: {self.first_prev[:16]}…)")
        return (f"{log}: OK: {self.entries} entries, seq {self.first_seq}..{self.last_seq}, {start}; "
                f"head {self.head}")


def verify(log: str, entries: Iterable[dict], *, contiguous: bool = True, ordered: bool = False) -> Verdict:
    """Check a run of entries (sorted by seq first unless ``ordered``): each one's hash, its link to the one
    before, and (``contiguous``) that no seq is missing. A filtered export is not contiguous: then each entry
    is checked on its own and with its neighbours where they are present, but a dropped entry looks like a
    filtered one."""
    if not ordered:
        try:
            entries = sorted(entries, key=lambda entry: int(entry["seq"]))
        except (KeyError, TypeError, ValueError):
            return Verdict(False, problem="an entry has no seq (not a ledger export?)")
    check = ChainCheck(log, contiguous)
    for entry in entries:
        if not check.feed(entry):
            break
    return check.verdict


class ChainCheck:
    """The chain checked one entry at a time (a store's log is walked in batches, never held whole)."""

    def __init__(self, log: str, contiguous: bool = True) -> None:
        self.log, self.contiguous = log, contiguous
        self.verdict = Verdict(ok=True)
        self._hash: str | None = None
        self._seq: int | None = None

    def feed(self, entry: dict) -> bool:
        """Check the next entry; False (and the verdict says why) at the first problem."""
        verdict = self.verdict
        try:
            seq = int(entry["seq"])
            prev, claimed = str(entry["prev"]), str(entry["hash"])
        except (KeyError, TypeError, ValueError):
            return _fail(verdict, f"entry {verdict.entries + 1} has no seq/prev/hash")
        last = self._seq
        if last is not None and seq == last:
            return _fail(verdict, f"seq {seq} appears twice")
        if self.contiguous and last is not None and seq != last + 1:
            return _fail(verdict, f"seq {last} is followed by seq {seq}: entries are missing (for an export made "
                                  "with filters, check it with --filtered)")
        if last is not None and seq == last + 1 and prev != self._hash:
            return _fail(verdict, f"seq {seq} does not link to seq {last} (an entry was replaced or removed)")
        if entry_hash(self.log, seq, prev, cells_of(self.log, entry)) != claimed:
            return _fail(verdict, f"seq {seq} was edited (its content no longer matches its hash)")
        if verdict.first_seq is None:
            verdict.first_seq, verdict.first_prev = seq, prev
        verdict.entries += 1
        verdict.last_seq, verdict.head = seq, claimed
        self._hash, self._seq = claimed, seq
        return True


def _fail(verdict: Verdict, problem: str) -> bool:
    verdict.ok, verdict.problem = False, problem
    return False


# -- exports -------------------------------------------------------------------------------------------


def export_header(log: str) -> list[str]:
    return [*FIELDS[log], *CHAIN_FIELDS]


def csv_lines(log: str, entries: Iterable[dict], *, header: bool = True) -> Iterator[str]:
    """CSV text, a header first: every field as its cell, then seq, prev and hash."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180; and a "\r" in a cell is quoted
    if header:
        writer.writerow(export_header(log))
    for entry in entries:
        writer.writerow([*cells_of(log, entry), entry["seq"], entry["prev"], entry["hash"]])
        if buffer.tell() > 16384:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def jsonl_lines(log: str, entries: Iterable[dict]) -> Iterator[str]:
    """JSON Lines: one object per entry with the log's name, its fields and its chain fields."""
    names = export_header(log)
    for entry in entries:
        yield orjson.dumps({"log": log, **{name: entry.get(name) for name in names}}).decode() + "\n"


def read_export(text: str) -> tuple[str, list[dict]]:
    """(log, entries) from a CSV or JSON Lines export; ValueError when it is neither."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        entries = []
        for number, line in enumerate(stripped.split("\n"), 1):  # JSON escapes "\n" only: no splitlines()
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ValueError(f"line {number} is not JSON") from None
            if not isinstance(entry, dict):
                raise ValueError(f"line {number} is not a JSON object")
            entries.append(entry)
        logs = {entry.get("log") for entry in entries}
        if len(logs) != 1 or next(iter(logs)) not in FIELDS:
            raise ValueError("the entries do not name one log ('requests' or 'audit')")
        return next(iter(logs)), entries
    rows = list(csv.reader(io.StringIO(stripped, newline="")))
    if not rows:
        raise ValueError("the file is empty")
    for log in FIELDS:
        if rows[0] == export_header(log):
            return log, [dict(zip(rows[0], row)) for row in rows[1:] if row]
    raise ValueError("the first line is not a ledger export's header (CSV) and the file is not JSON Lines")
