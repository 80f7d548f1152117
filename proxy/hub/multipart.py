"""``multipart/form-data`` read and written, bounded and pure (the audio transcription endpoint's body).

Only what an upload form needs: parts with a name, an optional file name and content type, and bytes.
Reading is bounded in parts and header size (the body itself was bounded by the edge) and every malformed
body is a 400 naming what is wrong, never an exception further in. Writing keeps the client's own boundary
when it still fits (the parts were the client's), so a relayed form differs only where it was changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.errors import BadRequest

MAX_PARTS = 64
MAX_PART_HEADERS = 8 * 1024
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\\r\n]|\\.)*"|[^;\s]*)')


@dataclass(slots=True, frozen=True)
class FormPart:
    name: str
    value: bytes
    filename: str | None = None  # set for a file field
    content_type: str | None = None
    head: bytes | None = None  # the part's header lines as they came, written back unchanged when relayed


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type, else a 400."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise BadRequest("Send this request as multipart/form-data (a file upload form).", code="invalid_content_type")
    for name, value in _PARAM.findall(";" + params):
        if name.lower() == "boundary":
            boundary = value[1:-1] if value.startswith('"') else value
            if _BOUNDARY.fullmatch(boundary):
                return boundary
    raise BadRequest("The multipart/form-data content type has no valid boundary.", code="invalid_multipart")


def parse_form(body: bytes, content_type: str) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` body (at most :data:`MAX_PARTS`)."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    if not body.startswith(delimiter):
        raise _malformed("it does not start with its boundary")
    parts: list[FormPart] = []
    position = len(delimiter)
    while True:
        if body.startswith(b"--", position):  # the closing delimiter
            return parts
        if not body.startswith(b"\r\n", position):
            raise _malformed("a boundary is not followed by a line break")
        end = body.find(b"\r\n" + delimiter, position)
        if end < 0:
            raise _malformed("it has no closing boundary")
        if len(parts) == MAX_PARTS:
            raise BadRequest(f"The form has more than {MAX_PARTS} fields.", code="invalid_multipart")
        parts.append(_part(body[position + 2:end]))
        position = end + 2 + len(delimiter)


def _part(raw: bytes) -> FormPart:
    split = raw.find(b"\r\n\r\n")
    if raw.startswith(b"\r\n"):  # a part with no headers at all
        split = -1
    if split < 0 or split > MAX_PART_HEADERS:
        raise _malformed("a field has no (or too long) headers")
    name = filename = content_type = None
    for line in raw[:split].decode("latin-1").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise _malformed("a field header is not 'Name: value'")
        key = key.strip().lower()
        if key == "content-disposition":
            kind, _, params = value.partition(";")
            if kind.strip().lower() != "form-data":
                raise _malformed("a field is not form-data")
            for param, text in _PARAM.findall(";" + params):
                text = _unquote(text)
                if param.lower() == "name":
                    name = text
                elif param.lower() == "filename":
                    filename = text
        elif key == "content-type":
            content_type = value.strip()[:200]
    if not name:
        raise _malformed("a field has no name")
    return FormPart(name, raw[split + 4:], filename, content_type, raw[:split])


def encode_form(parts: list[FormPart], boundary: str) -> tuple[bytes, str]:
    """The body and content type of ``parts`` as ``multipart/form-data`` (another ``boundary`` if a part
    holds it); a part read from a client keeps its header lines byte for byte."""
    chosen, tries = boundary, 0
    while any(chosen.encode("ascii") in part.value for part in parts):
        tries += 1
        chosen = f"subrelay{tries}-{boundary}"[:70]
    boundary = chosen
    delimiter = b"--" + boundary.encode("ascii")
    out = bytearray()
    for part in parts:
        out += delimiter + b"\r\n"
        if part.head is not None:
            out += part.head + b"\r\n"
        else:
            out += b'Content-Disposition: form-data; name="' + _quote(part.name) + b'"'
            if part.filename is not None:
                out += b'; filename="' + _quote(part.filename) + b'"'
            out += b"\r\n"
            if part.content_type:
                out += b"Content-Type: " + part.content_type.encode("latin-1", "replace") + b"\r\n"
        out += b"\r\n" + part.value + b"\r\n"
    out += delimiter + b"--\r\n"
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quote(text: str) -> bytes:
    """A field or file name inside quotes, as browsers write it (quotes and line breaks percent-encoded)."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode("utf-8")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    try:
        return text.encode("latin-1").decode("utf-8")  # the header was read as latin-1; names are UTF-8
    except UnicodeError:
        return text


def _malformed(why: str) -> BadRequest:
    return BadRequest(f"The multipart/form-data body is malformed: {why}.", code="invalid_multipart")
