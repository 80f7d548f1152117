"""The plain endpoints' pure codecs: the bounded multipart/form-data reader and writer (checked against the
standard library's MIME parser), and the usage of a large answer read from its end alone."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from proxy.errors import BadRequest
from proxy.hub.multipart import MAX_PARTS, FormPart, encode_form, parse_form
from proxy.hub.usage import usage_at_end
from tests.mock_upstream.plain_answers import read_form

# Names without a backslash: its escaping differs between clients (httpx doubles it, browsers do not), which
# does not matter for what is relayed (a part's header lines go back as they came).
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\\"), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(fields=st.dictionaries(names, st.text(max_size=64).map(str.encode), max_size=5), audio=st.binary(max_size=512),
       filename=names)
def test_a_written_form_reads_back_the_same_here_and_in_the_standard_librarys_parser(fields, audio, filename):
    parts = [FormPart(name, value) for name, value in fields.items() if name != "file"]
    parts.append(FormPart("file", audio, filename, "audio/wav"))
    body, content_type = encode_form(parts, "b0undary42")
    read = parse_form(body, content_type)
    assert [(p.name, p.value, p.filename, p.content_type) for p in read] == [
        (_sent(p.name), p.value, None if p.filename is None else _sent(p.filename), p.content_type) for p in parts]
    assert encode_form(read, "b0undary42") == (body, content_type)  # read parts are written back unchanged
    if filename.isascii() and filename.isprintable():  # the standard library splits headers on NEL and kin
        assert read_form(content_type, body)["file"]["bytes"] == audio


def _sent(name: str) -> str:
    """A name as a browser writes it in a part's header: quotes and line breaks percent-encoded."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def test_a_boundary_inside_a_part_is_replaced_by_one_that_is_not():
    parts = [FormPart("model", b"x--b0undary42y"), FormPart("file", b"data", "a.wav")]
    body, content_type = encode_form(parts, "b0undary42")
    assert content_type != "multipart/form-data; boundary=b0undary42"
    assert [(p.name, p.value, p.filename) for p in parse_form(body, content_type)] == [
        ("model", b"x--b0undary42y", None), ("file", b"data", "a.wav")]


@pytest.mark.parametrize("body,content_type", [
    (b"x", "multipart/form-data; boundary=b"),
    (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", "multipart/form-data; boundary=b"),
    (b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--b--", "multipart/form-data; boundary=b"),
    (b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--", "multipart/form-data; boundary=b"),
    (b"--b\r\nno colon\r\n\r\nv\r\n--b--", "multipart/form-data; boundary=b"),
    (b"--b--", "multipart/form-data; boundary=" + "b" * 71),
    (b"--b--", "text/plain; boundary=b"),
])
def test_malformed_forms_are_a_400_not_an_exception(body, content_type):
    with pytest.raises(BadRequest):
        parse_form(body, content_type)


def test_a_form_has_at_most_so_many_parts():
    body, content_type = encode_form([FormPart(f"f{i}", b"v") for i in range(MAX_PARTS + 1)], "b")
    with pytest.raises(BadRequest, match="more than"):
        parse_form(body, content_type)


def test_the_usage_of_a_megabyte_answer_is_read_from_its_end():
    answer = {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [0.125] * 1536}
                                         for i in range(64)],
              "model": "text-embedding-3-small", "usage": {"prompt_tokens": 321, "total_tokens": 321}}
    body = orjson.dumps(answer)
    assert len(body) > 500_000
    usage = usage_at_end(body)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (321, 0, 321)
    assert usage_at_end(body.replace(b'"usage"', b'"other"')) is None
    assert usage_at_end(body[:-20]) is None  # cut short: no usage rather than a guess
