"""The OTLP/protobuf bytes of a batch of spans, written by hand (no SDK, no generated classes).

Why by hand: through the OpenTelemetry SDK and its protobuf classes a traced request cost 2.36 M instructions
instead of 0.81 M (spans, attribute cleaning, locks, then pb2 objects per span). The few messages traces need
are small and fixed — ``ExportTraceServiceRequest`` > ``ResourceSpans`` > ``ScopeSpans`` > ``Span``, with
``KeyValue`` / ``AnyValue`` attributes and a ``Status`` — so this writes their wire format directly, with the
constant parts (the resource, the scope, a span's name, kind, attributes and status) encoded once and kept
(proxy.observe.tracing assembles each request's spans from them). Fields are written in
field-number order and defaults are left out, as protobuf itself serializes them: the tests decode these
bytes with the official ``opentelemetry-proto`` classes and check that re-encoding gives the same bytes.

Field numbers are those of opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

SERVER, CLIENT, INTERNAL = 2, 3, 1  # Span.SpanKind
TIMES = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano (7, fixed64) and end_time_unix_nano (8) with tags
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)  # field 16 (fixed32): the parent's remoteness is known
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)  # ... and the parent is remote (the client's span)
_SMALL = [bytes((n,)) for n in range(128)]
_KINDS = {kind: b"\x30" + bytes((kind,)) for kind in range(6)}  # Span.kind, field 6 (varint)


def varint(value: int) -> bytes:
    """A protobuf base-128 varint (a negative int64 as its 64-bit two's complement, as protobuf writes it)."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


LENGTHS = [varint(n) for n in range(4096)]  # a length-delimited field's length, precomputed for most fields


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    n = len(payload)
    return tag + (LENGTHS[n] if n < 4096 else varint(n)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message: string 1, bool 2, int64 3, double 4 (anything else as its string)."""
    if isinstance(value, str):
        return field(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return field(b"\x0a", str(value).encode("utf-8", "replace"))


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message (key 1, value 2)."""
    return field(b"\x0a", key.encode()) + field(b"\x12", any_value(value))


def attribute(key: str, value: Any) -> bytes:
    """A span's attribute field (Span.attributes, 9)."""
    return field(b"\x4a", key_value(key, value))


_STATUS_UNSET = b"\x7a\x00"  # an empty Status, as the SDK sends for a span that did not fail


def status(error: str | None) -> bytes:
    """Span.status (15): UNSET when ``error`` is None, else ERROR with that message (left out when empty)."""
    if error is None:
        return _STATUS_UNSET
    return field(b"\x7a", (field(b"\x12", error.encode("utf-8", "replace")) if error else b"") + b"\x18\x02")


def flags(remote_parent: bool) -> bytes:
    """Span.flags (16): whether the parent's remoteness is known (always) and whether it is remote."""
    return _FLAGS_REMOTE if remote_parent else _FLAGS_LOCAL


def name_and_kind(name: str, kind: int) -> bytes:
    """Span.name (5) and Span.kind (6)."""
    return field(b"\x2a", name.encode("utf-8", "replace")) + _KINDS[kind]


def resource(attributes: Mapping[str, Any]) -> bytes:
    """``ResourceSpans.resource`` (field 1) with these attributes."""
    return field(b"\x0a", b"".join(field(b"\x0a", key_value(key, value)) for key, value in attributes.items()))


def scope(name: str, version: str = "") -> bytes:
    """``ScopeSpans.scope`` (field 1): the instrumentation scope's name and version."""
    body = field(b"\x0a", name.encode())
    if version:
        body += field(b"\x12", version.encode())
    return field(b"\x0a", body)


def export_request(resource_field: bytes, scope_field: bytes, spans: Sequence[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` with one resource and one scope holding ``spans`` (Span fields of
    ScopeSpans), in one join: the lengths are added up rather than each level copying the one inside it."""
    scope_spans = len(scope_field) + sum(map(len, spans))
    resource_spans = len(resource_field) + 1 + len(varint(scope_spans)) + scope_spans
    return b"".join((b"\x0a", varint(resource_spans), resource_field, b"\x12", varint(scope_spans), scope_field,
                     *spans))
