"""The model calls' own HTTP/1.1 client (proxy.upstream.wire) against a raw loopback server whose bytes each test
writes: what an upstream can do on the wire (chunks, a body to the connection's end, a dropped or silent
connection, a flood for a client that reads nothing, a compressed answer) and what subrelay must hold to (one
kept-alive connection reused, bounded buffering, the pool's bound, no header line a value could add)."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from proxy.upstream import wire
from proxy.upstream.wire import WirePool

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class RawServer:
    """A loopback TCP server: ``answer(reader, writer)`` is called once per request head it reads."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if length and length[0]:
                    await reader.readexactly(length[0])
                if await self.answer(reader, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def pool(max_connections: int = 8, **timeouts: float) -> WirePool:
    timeout = httpx.Timeout(**{"connect": 2.0, "read": 5.0, "write": 5.0, "pool": 2.0, **timeouts})
    return WirePool(None, timeout, max_connections=max_connections, max_keepalive=8, keepalive_expiry=5.0)


async def body_of(response) -> bytes:
    try:
        return b"".join([piece async for piece in response.aiter_bytes()])
    finally:
        await response.aclose()


async def test_answers_reuse_one_kept_alive_connection_and_the_head_is_what_was_asked():
    async def answer(reader, writer):
        writer.write(OK)

    async with RawServer(answer) as server:
        client = pool()
        for _ in range(3):
            response = await client.send("POST", server.url, {"Authorization": "Bearer sk-x", "Content-Type": "application/json"}, b"{}")
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            assert await body_of(response) == b'{"ok":true}'
        await client.aclose()
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}\r\n" in head
    assert "Authorization: Bearer sk-x\r\n" in head and "Content-Length: 2\r\n" in head


async def test_a_chunked_answer_and_one_that_runs_to_the_connections_end_arrive_whole():
    async def chunked(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def to_the_end(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it, then the close")
        await writer.drain()
        return False

    async with RawServer(chunked) as server:
        client = pool()
        assert await body_of(await client.send("POST", server.url, {}, b"x")) == b"data: one\n\ndata: two\n\n"
    async with RawServer(to_the_end) as server:
        assert await body_of(await client.send("POST", server.url, {}, b"x")) == b"all of it, then the close"
        assert await body_of(await client.send("POST", server.url, {}, b"x")) == b"all of it, then the close"
    assert server.connections == 2  # a closed connection is never reused


@pytest.mark.parametrize("headers", [{"X-Note": "a\r\nX-Injected: 1"}, {"X-Note": "a\nb"}, {"X Bad": "v"},
                                     {"X-Note:": "v"}])
async def test_a_header_that_would_add_a_line_is_refused_before_anything_is_sent(headers):
    async def answer(reader, writer):
        writer.write(OK)

    async with RawServer(answer) as server:
        with pytest.raises(httpx.LocalProtocolError):
            await pool().send("POST", server.url, headers, b"{}")
        await asyncio.sleep(0.05)
    assert server.connections == 0


async def test_the_pool_bound_makes_callers_wait_and_a_freed_slot_goes_to_the_waiter():
    release = asyncio.Event()

    async def held(reader, writer):
        await release.wait()
        writer.write(OK)

    async with RawServer(held) as server:
        client = pool(max_connections=2, pool=0.3)
        first = [asyncio.create_task(client.send("POST", server.url, {}, b"")) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout):  # both connections are busy for longer than the pool timeout
            await client.send("POST", server.url, {}, b"")
        third = asyncio.create_task(client.send("POST", server.url, {}, b""))
        await asyncio.sleep(0.05)
        release.set()
        for task in first:
            assert await body_of(await task) == b'{"ok":true}'
        assert await body_of(await third) == b'{"ok":true}'
    assert server.connections == 2


async def test_a_cancelled_call_gives_its_slot_back():
    async def never(reader, writer):
        await asyncio.sleep(30)

    async with RawServer(never) as server:
        client = pool(max_connections=1, pool=0.3, read=0.4)
        call = asyncio.create_task(client.send("POST", server.url, {}, b""))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        with pytest.raises(httpx.ReadTimeout):  # it got the slot (not a PoolTimeout), then nothing came
            await client.send("POST", server.url, {}, b"")


async def test_silence_before_the_head_or_mid_body_is_a_read_timeout():
    async def silent(reader, writer):
        await asyncio.sleep(30)

    async def stalls(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await asyncio.sleep(30)

    for answer, where in ((silent, "head"), (stalls, "body")):
        async with RawServer(answer) as server:
            client = pool(read=0.3)
            with pytest.raises(httpx.ReadTimeout):
                response = await client.send("POST", server.url, {}, b"")
                assert where == "body"
                await body_of(response)


async def test_a_refused_a_dropped_and_a_broken_answer_are_the_errors_callers_map():
    async with RawServer(lambda r, w: None) as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):  # nobody listens there now
        await pool().send("POST", url, {}, b"")

    async def drops(reader, writer):
        return False

    async def drops_mid_body(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        return False

    async def garbage(reader, writer):
        writer.write(b"SMTP ready\r\n\r\n")

    async with RawServer(drops) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await pool().send("POST", server.url, {}, b"")
    async with RawServer(drops_mid_body) as server:
        response = await pool().send("POST", server.url, {}, b"")
        with pytest.raises(httpx.ReadError):
            await body_of(response)
    async with RawServer(garbage) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await pool().send("POST", server.url, {}, b"")


async def test_a_client_that_reads_nothing_holds_the_upstream_back_at_a_bounded_buffer():
    size = 8 * 1024 * 1024
    block = bytes(range(256)) * 256

    async def flood(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    async with RawServer(flood) as server:
        client = pool()
        response = await client.send("POST", server.url, {}, b"")
        await asyncio.sleep(0.5)  # the upstream writes as fast as it can; nobody reads
        connection = response._connection
        assert connection.paused
        assert connection.buffered <= wire._PAUSE_AT + wire._READ_SIZE  # a pause and at most one socket read past it
        received = await body_of(response)
    assert received == block * (size // len(block))  # all of it, in order, once the client reads


async def test_a_compressed_answer_is_decoded_in_bounded_pieces():
    plain = b"0" * (4 * 1024 * 1024)
    packed = gzip.compress(plain)  # about 4 KB that become 4 MB

    async def answer(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed))

    async with RawServer(answer) as server:
        response = await pool().send("POST", server.url, {}, b"")
        pieces = [piece async for piece in response.aiter_bytes()]
        await response.aclose()
    assert b"".join(pieces) == plain
    assert max(len(piece) for piece in pieces) <= wire._DECODED_PIECE


async def test_a_half_read_answer_closes_its_connection_and_the_next_call_opens_another():
    async def long(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200000)

    async with RawServer(long) as server:
        client = pool()
        response = await client.send("POST", server.url, {}, b"")
        async for _ in response.aiter_bytes():
            break
        await response.aclose()
        assert len(await body_of(await client.send("POST", server.url, {}, b""))) == 200000
    assert server.connections == 2


async def test_an_answer_closed_just_before_its_end_keeps_its_connection_for_the_next_call():
    """A translator stops at response.completed, before the chunked body's last bytes: the connection reads
    them and serves the next call (a new connection per turn would cost a handshake each, TLS ones too)."""
    async def late_end(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (11, b"data: done\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    async with RawServer(late_end) as server:
        client = pool()
        for _ in range(3):
            response = await client.send("POST", server.url, {}, b"")
            async for piece in response.aiter_bytes():
                assert piece == b"data: done\n"
                break
            await response.aclose()
            await asyncio.sleep(0.2)
    assert server.connections == 1


async def test_a_tls_upstream_is_verified_against_the_trusted_authorities(tmp_path):
    """Every real vendor is HTTPS: the answer comes over TLS when the upstream's certificate chains to a trusted
    authority (here a test CA, as SSL_CERT_FILE would name one), and the call fails to connect when it does not."""
    import ssl

    from tests.redis_ha import Tls

    tls = Tls(str(tmp_path))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls.cert, tls.key)

    async def answer(reader, writer):
        writer.write(OK)

    server = await asyncio.start_server(RawServer(answer)._serve, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    try:
        trusting = WirePool(ssl.create_default_context(cafile=tls.ca), httpx.Timeout(5.0), 8, 8, 5.0)
        assert await body_of(await trusting.send("POST", url, {}, b"{}")) == b'{"ok":true}'
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await WirePool(None, httpx.Timeout(5.0), 8, 8, 5.0).send("POST", url, {}, b"{}")  # the system's authorities
    finally:
        server.close()


async def test_a_connection_kept_with_an_unread_answer_still_reads_the_next_one():
    """An answer that arrived whole but was closed unread (past the pause mark: reading stopped) leaves its
    connection to the pool; the next call on it must not wait on a socket nobody reads."""
    body = b"y" * 30_000

    async def answer(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with RawServer(answer) as server:
        client = pool(read=2.0)
        response = await client.send("POST", server.url, {}, b"")
        await asyncio.sleep(0.3)  # all of it arrives; nobody reads it
        assert response._connection.done
        await response.aclose()
        assert await body_of(await client.send("POST", server.url, {}, b"")) == body
    assert server.connections == 1
