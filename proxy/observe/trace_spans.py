"""A finished request's spans as OTLP bytes, written in the export thread from the plain values the request
path kept (proxy.observe.tracing): a child span per mark (``admission``, ``upstream connect``, ``fallback``),
``first byte`` and ``stream`` when the answer came, then the request's SERVER span with its GenAI attributes.

Request after request the spans have the same shape — the same marks with the same attributes, the same
model, route and status — and differ only in ids, times, the person, the request id and the token counts.
So each shape becomes, once, a ``struct.Struct`` whose format alternates the constant bytes (tags, lengths,
names, kinds, attributes, statuses, flags) with holes for those values, and a request is one slice
assignment and one ``pack`` call: about a fifth of the instructions of assembling its spans field by field.
The bytes are protobuf's own (the tests decode them with the official classes and re-serialize them to the
same bytes).
"""

from __future__ import annotations

import struct
import time
from math import floor  # a builtin call: a quarter cheaper than int() on a float
from random import getrandbits
from typing import Any

from proxy.observe import otlp

_OPERATIONS = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "chat",
               "/responses": "chat", "/v1/responses/compact": "chat", "/v1/messages": "chat"}
_ZERO_ID = bytes(8)
_templates: dict[tuple, tuple[struct.Struct, list]] = {}  # a request's shape → its Struct and constant pieces
_counts: dict[tuple[int, int], bytes] = {}  # (input, output) tokens → their two attributes
_FIRST_BYTE = ("first byte", ())
_STREAM = ("stream", ())


def operation(path: str) -> str:
    return _OPERATIONS.get(path, "chat")


def encode(entries: list[tuple]) -> list[tuple[bytes, int] | None]:
    """Each request's spans (ScopeSpans.spans fields, concatenated) and how many there are; None for one that
    could not be encoded (logged by the caller). One call per batch: the clock offset and the children's
    random ids are drawn once for all."""
    offset = time.time_ns() - time.perf_counter_ns()  # perf_counter times on the request path → epoch ns
    pool = _ids(8 * sum(len(entry[1].marks) + 2 for entry in entries))
    out: list[tuple[bytes, int] | None] = []
    at = 0
    for entry in entries:
        try:
            out.append(_encode(entry, offset, pool, at))
        except Exception:  # noqa: BLE001 - one bad entry must not cost the batch
            out.append(None)
        at += 8 * len(entry[1].marks) + 16
    return out



def _ids(size: int) -> bytes:
    fresh = getrandbits(8 * size).to_bytes(size, "big") if size else b""
    while _ZERO_ID in fresh:  # never the invalid all-zero id (a misaligned match only draws again)
        fresh = getrandbits(8 * size).to_bytes(size, "big")
    return fresh


def _encode(entry: tuple, offset: int, fresh: bytes, at: int) -> tuple[bytes, int]:
    (_, trace, path, model, upstream_model, provider, route, status, request_id, person, usage, notes, error,
     started, first_byte, ended) = entry
    trace_id, root_id, state = trace.trace_id, trace.span_id, trace.state_field
    marks = trace.marks
    values: list[Any] = []
    shapes = []
    connected = None
    for name, start, end, extra in marks:
        shapes.append((name, tuple(extra.items())))
        end_ns = offset + floor(end * 1e9)
        values += (trace_id, fresh[at:at + 8], state, root_id, offset + floor(start * 1e9), end_ns)
        at += 8
        if name == "upstream connect" and not extra.get("error.type"):
            connected = end_ns
    ended_ns = offset + floor(ended * 1e9)
    if connected is not None and first_byte is not None:
        first = offset + floor(first_byte * 1e9)
        first = first if first > connected else connected
        values += (trace_id, fresh[at:at + 8], state, root_id, connected, first,
                   trace_id, fresh[at + 8:at + 16], state, root_id, first, ended_ns if ended_ns > first else first)
        shapes += (_FIRST_BYTE, _STREAM)
    counts = b""
    if usage is not None:
        tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0)
        counts = _counts.get(tokens) or _count_attributes(tokens)
    person_bytes, request_bytes = person.encode("utf-8", "replace"), request_id.encode("utf-8", "replace")
    remote = trace.parent_id is not None
    if remote:
        values += (trace_id, root_id, state, trace.parent_id)
    else:
        values += (trace_id, root_id, state)
    values += (offset + floor(started * 1e9), ended_ns, person_bytes, request_bytes, counts)
    key = (tuple(shapes), path, model, upstream_model, provider, route, status, error, notes, remote, len(state),
           len(person_bytes), len(request_bytes), len(counts))
    template, pieces = _templates.get(key) or _template(key)
    arguments = pieces.copy()
    arguments[1::2] = values  # the holes, between the constant pieces
    return template.pack(*arguments), len(shapes) + 1


def _count_attributes(tokens: tuple[int, int]) -> bytes:
    if len(_counts) > 4096:
        _counts.clear()
    encoded = _counts[tokens] = (otlp.attribute("gen_ai.usage.input_tokens", tokens[0])
                                 + otlp.attribute("gen_ai.usage.output_tokens", tokens[1]))
    return encoded


class _Layout:
    """Constant bytes and holes in order, folded into a Struct format that alternates them."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = [b""]
        self.holes: list[str] = []

    def const(self, data: bytes) -> None:
        self.pieces[-1] += data

    def hole(self, fmt: str) -> None:
        self.holes.append(fmt)
        self.pieces.append(b"")

    def done(self) -> tuple[struct.Struct, list]:
        fmt = "<" + "".join(f"{len(piece)}s{hole}" for piece, hole in zip(self.pieces, self.holes))
        fmt += f"{len(self.pieces[-1])}s"
        arguments: list = []
        for piece in self.pieces[:-1]:
            arguments += (piece, None)
        arguments.append(self.pieces[-1])
        return struct.Struct(fmt), arguments


def _span(layout: _Layout, state: int, parent: bool, named: bytes, attributes: bytes, tail: bytes,
          holes: tuple[tuple[bytes, int], ...] = ()) -> None:
    """One span field: tag and length, trace id, span id, trace state, parent span id, name and kind, times,
    attributes (``holes``: attribute prefixes each followed by a string value of that many bytes), then
    ``tail`` (status and flags)."""
    length = (2 + 16) + (2 + 8) + state + ((2 + 8) if parent else 0) + len(named) + 18 + len(attributes) + \
        sum(len(prefix) + size for prefix, size in holes) + len(tail)
    layout.const(b"\x12" + otlp.varint(length) + b"\x0a\x10")
    layout.hole("16s")
    layout.const(b"\x12\x08")
    layout.hole("8s")
    layout.hole(f"{state}s")  # the trace state field (tag, length, value) or nothing
    if parent:
        layout.const(b"\x22\x08")
        layout.hole("8s")
    layout.const(named + b"\x39")
    layout.hole("Q")
    layout.const(b"\x41")
    layout.hole("Q")
    layout.const(attributes)
    for prefix, size in holes:
        layout.const(prefix)
        layout.hole(f"{size}s")
    layout.const(tail)


def _string_prefix(key: str, size: int) -> bytes:
    """An attribute field up to its string value of ``size`` bytes (Span.attributes > KeyValue > AnyValue)."""
    value = otlp.varint(size)
    key_value = otlp.field(b"\x0a", key.encode()) + b"\x12" + otlp.varint(1 + len(value) + size) + b"\x0a" + value
    return b"\x4a" + otlp.varint(len(key_value) + size) + key_value


def _template(key: tuple) -> tuple[struct.Struct, list]:
    shapes, path, model, upstream_model, provider, route, status, error, notes, remote, state, person, request, \
        counts = key
    layout = _Layout()
    for name, items in shapes:
        failed = dict(items).get("error.type")
        kind = otlp.CLIENT if name == "upstream connect" else otlp.INTERNAL
        _span(layout, state, True, otlp.name_and_kind(name, kind),
              b"".join(otlp.attribute(k, v) for k, v in items if v is not None),
              otlp.status(str(failed) if failed else None) + otlp.flags(False))
    op = operation(path)
    attributes = [("gen_ai.operation.name", op), ("http.response.status_code", status)]
    if model not in ("-", ""):
        attributes.append(("gen_ai.request.model", model))
    if upstream_model not in ("-", ""):
        attributes.append(("gen_ai.response.model", upstream_model))
    if provider not in ("-", ""):
        attributes += (("gen_ai.provider.name", provider), ("subrelay.route", route))
    if notes:
        attributes.append(("subrelay.decision", "; ".join(notes)))
    failure = None
    if status >= 400 or status == 0:
        attributes.append(("error.type", error or str(status or "cancelled")))
        failure = error or ""
    _span(layout, state, remote, otlp.name_and_kind(f"{op} {model}" if model not in ("-", "") else op, otlp.SERVER),
          b"".join(otlp.attribute(k, v) for k, v in attributes), otlp.status(failure) + otlp.flags(remote),
          ((_string_prefix("subrelay.person", person), person),
           (_string_prefix("subrelay.request_id", request), request), (b"", counts)))
    if len(_templates) > 1024:  # bounded: shapes are few, but nothing may grow for ever
        _templates.clear()
    built = _templates[key] = layout.done()
    return built
