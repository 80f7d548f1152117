"""The SSE codec: frames split anywhere, CRLF, comments, multi-line data."""

from __future__ import annotations

from proxy.hub.sse import SSEDecoder, SSEEvent, encode_data

STREAM = (
    b": keep-alive\r\n\r\n"
    b"event: response.created\r\ndata: {\"a\":1}\r\n\r\n"
    b"data: line one\ndata: line two\n\n"
    b"event: x\nid: 7\nretry: 100\ndata:{\"no_space\":true}\n\n"
)
EXPECTED = [
    SSEEvent("response.created", b'{"a":1}'),
    SSEEvent(None, b"line one\nline two"),
    SSEEvent("x", b'{"no_space":true}'),
]


def test_whole_stream_decodes_to_events_and_skips_comments():
    assert SSEDecoder().feed(STREAM) == EXPECTED


def test_every_split_point_gives_the_same_events():
    for split in range(1, len(STREAM)):
        decoder = SSEDecoder()
        events = decoder.feed(STREAM[:split]) + decoder.feed(STREAM[split:])
        assert events == EXPECTED, f"split at {split}"


def test_byte_by_byte_feeding_including_crlf_halves():
    decoder = SSEDecoder()
    events = []
    for byte in STREAM:
        events += decoder.feed(bytes([byte]))
    assert events == EXPECTED


def test_an_event_is_returned_as_soon_as_its_blank_line_arrives():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n") == []
    assert decoder.feed(b"\n") == [SSEEvent(None, b"1")]


def test_flush_returns_a_final_event_without_terminator():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: first\n\ndata: last") == [SSEEvent(None, b"first")]
    assert decoder.flush() == [SSEEvent(None, b"last")]
    assert decoder.flush() == []


def test_encode_frames_a_payload():
    assert encode_data(b'{"x":1}') == b'data: {"x":1}\n\n'


def test_a_huge_event_in_small_pieces_decodes_once_whole():
    decoder = SSEDecoder()
    payload = b"x" * (10 * 1024 * 1024)
    line = b"data: " + payload
    events = []
    for start in range(0, len(line), 16384):  # a 10 MB line in network-sized pieces
        events += decoder.feed(line[start:start + 16384])
    assert events == []
    assert decoder.feed(b"\r\n\r\n") == [SSEEvent(None, payload)]


def test_an_endless_line_fails_instead_of_growing_without_bound():
    import pytest

    from proxy.hub.sse import SSEEventTooLarge

    decoder = SSEDecoder(max_event_bytes=1024 * 1024)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(200):
            decoder.feed(b"y" * 16384)
    assert decoder.feed(b"data: fine\n\n") == [SSEEvent(None, b"fine")]  # the decoder is usable again


async def test_an_oversized_upstream_event_fails_that_stream_clearly():
    import httpx

    from adapters.codex.response import CodexStreamTranslator
    from proxy.hub import sse
    from proxy.hub.events import StreamFailure
    from proxy.upstream.client import translated_batches

    async def body():
        for _ in range(sse.MAX_EVENT_BYTES // 65536 + 2):
            yield b"z" * 65536

    response = httpx.Response(200, content=body())
    batches = [batch async for batch in translated_batches(response, CodexStreamTranslator())]
    failure = batches[-1][-1]
    assert isinstance(failure, StreamFailure) and failure.error.code == "upstream_event_too_large"
