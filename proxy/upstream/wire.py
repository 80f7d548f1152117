"""A lean HTTP/1.1 client for model calls: asyncio's protocol callbacks and httptools' C parser, nothing else.

Why not aiohttp (what this replaced on the hot path): its ``ClientSession.request`` is general (cookies,
redirects, proxies, tracing hooks, multipart, a timer per read), and for a small answer relayed at loopback
speed it was the largest single cost of a request (about a third of a non-stream request's instructions;
benchmarks/README.md, issue 33). A model call needs much less: one keep-alive connection per call from a
bounded pool, a request head written in one piece, the answer's head parsed by httptools (what uvicorn
parses client requests with) and its body handed over as it arrives, with flow control so a slow client
holds the upstream back at a bounded buffer.

What it guarantees, as the aiohttp path did: connect, read, write and pool timeouts (``httpx.Timeout``), each
raised as the httpx exception the callers map (``ConnectTimeout``, ``ReadTimeout``…; a refused connection is a
``ConnectError``, a dropped one ``RemoteProtocolError`` before the head and ``ReadError`` after it); at most
``max_connections`` connections and ``max_keepalive`` idle ones per origin, an idle one closed after
``keepalive_expiry``; TLS with the shared client's SSL context (so ``SSL_CERT_FILE`` works the same); no header
value can add a line to the request (CR and LF are refused). A gzip or deflate answer is decoded as it
arrives, at most ``_DECODED_PIECE`` bytes at a time (a small compressed piece cannot become one huge one).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

import httptools
import httpx
from multidict import CIMultiDict

# Reading stops while this much answer waits for the client, and starts again once the client took it; a socket
# read takes at most _READ_SIZE (uvloop would read 256 KiB at once). So a stalled client holds about their sum
# here, plus what the client's own socket buffers (benchmarks/probes/stalled_streams.py).
_PAUSE_AT = 16 * 1024
_READ_SIZE = 16 * 1024
_DECODED_PIECE = 64 * 1024  # a compressed answer is handed out in pieces of at most this
# An answer closed before its end (a translator stops at response.completed, before the chunked body's last
# bytes) keeps its connection if the rest arrives within this time and size; else the connection closes.
_DRAIN_SECONDS = 2.0
_DRAIN_BYTES = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Origin:
    """A URL's parts, worked out once per URL string (upstream URLs are a few fixed strings per provider)."""

    __slots__ = ("key", "scheme", "host", "port", "target", "host_header")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
        host = parts.hostname or ""
        if not host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise httpx.UnsupportedProtocol(f"Request URL has an invalid port ({exc}).") from None
        self.scheme, self.host, self.port = scheme, host, port
        self.key = (scheme, host, port)
        self.target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        named = f"[{host}]" if ":" in host else host
        self.host_header = named if port == _DEFAULT_PORTS[scheme] else f"{named}:{port}"
        if any(c in self.target for c in " \r\n") or any(c in self.host_header for c in " \r\n"):
            raise httpx.UnsupportedProtocol("Request URL has a space or a line break in it.")


class _Connection(asyncio.BufferedProtocol):
    """One upstream connection: the protocol callbacks, the parser's, and the answer's buffered body. A
    buffered protocol so that the loop reads into a buffer of ours, of a size we choose."""

    __slots__ = ("origin", "loop", "transport", "parser", "status", "raw_headers", "keep_alive", "chunks",
                 "buffered", "head", "waiter", "drained", "done", "error", "closed", "paused", "close_delimited",
                 "last_read", "read_timeout", "timer", "idle_since", "got_bytes", "on_body", "buffer",
                 "parked", "drain_timer")

    def __init__(self, origin: _Origin, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.origin, self.loop, self.read_timeout = origin, loop, read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.drained: asyncio.Future | None = None  # set while writing waits for the socket's buffer
        self.idle_since = 0.0
        self.buffer: memoryview | None = None
        self.parked: Callable[[_Connection], None] | None = None  # set while the rest of a closed answer is read
        self.drain_timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.chunks: list[bytes] = []
        # httptools calls on_body once per HTTP chunk (an SSE upstream sends one per event): the list's own
        # append, and the accounting once per socket read in data_received.
        self.on_body = self.chunks.append
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.raw_headers: list[tuple[str, str]] = []
        self.keep_alive = False
        self.buffered = 0
        self.head: asyncio.Future | None = None
        self.waiter: asyncio.Future | None = None
        self.done = False
        self.error: Exception | None = None
        self.paused = False
        self.close_delimited = False
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.got_bytes = False

    # asyncio's callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self.buffer
        if buffer is None:
            buffer = self.buffer = memoryview(bytearray(_READ_SIZE))
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.buffer[:nbytes])  # the parser copies what it hands on: no copy here

    def data_received(self, data: bytes | memoryview) -> None:
        self.last_read = self.loop.time()
        self.got_bytes = True
        if self.head is None or self.done:  # bytes on an idle connection, or after the answer: not to be trusted
            self.closed = True
            self.transport.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))
            self.transport.abort()
            return
        if self.chunks:
            self.buffered += len(data)  # framing included: a bound, not a count
            if self.parked is not None:  # the rest of an answer nobody reads any more
                self.chunks.clear()
                if self.buffered > _DRAIN_BYTES:
                    self.abandon()
                return
            if self.buffered > _PAUSE_AT and not self.paused:
                self.paused = True  # the client is slower than the upstream: the rest waits in the upstream's socket
                self.transport.pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        if self.head is None or self.done:
            return
        if self.status and self.close_delimited and exc is None:  # the body ran to the connection's end
            self.on_message_complete()
            return
        if not self.status:
            self._fail(httpx.RemoteProtocolError("the upstream closed the connection without an answer"))
        else:
            self._fail(httpx.ReadError("the upstream closed the connection mid-answer"))
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue…): the real one follows
            self.raw_headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        names = {name.lower() for name, _ in self.raw_headers}
        self.close_delimited = "content-length" not in names and "transfer-encoding" not in names \
            and status not in (204, 304)
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)

    def on_message_complete(self) -> None:
        if not self.status:
            return  # the end of an interim answer
        self.done = True
        self._stop_timer()
        parked = self.parked
        if parked is not None:  # the rest of a closed answer came: the connection can serve the next call
            self.parked = None
            if self.drain_timer is not None:
                self.drain_timer.cancel()
                self.drain_timer = None
            parked(self)
            return
        self._wake()

    def abandon(self) -> None:
        """Stop waiting for the rest of a closed answer: the connection closes."""
        self.parked = None
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # the request's side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._stop_timer()
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)
        self._wake()

    def _arm_timer(self) -> None:
        if self.read_timeout is not None and self.timer is None:
            self.timer = self.loop.call_at(self.last_read + self.read_timeout, self._check_read_timeout)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_read_timeout(self) -> None:
        """One timer per answer, not per read: it fires at the last read plus the timeout and, if bytes came
        since, sleeps until the new deadline; while the client holds reading paused it does not run."""
        self.timer = None
        if self.done or self.error is not None or self.paused:
            return
        deadline = self.last_read + self.read_timeout
        if self.loop.time() < deadline:
            self.timer = self.loop.call_at(deadline, self._check_read_timeout)
            return
        self._fail(httpx.ReadTimeout("the upstream sent nothing within the read timeout"))
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def take(self) -> bytes:
        """Everything buffered, as one piece; reading resumes if it was paused."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()  # the same list: the parser appends to it
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.last_read = self.loop.time()
            if not self.closed and self.transport is not None:
                self.transport.resume_reading()
            if not self.done:
                self._arm_timer()
        return data

    async def wait(self) -> None:
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def reusable(self) -> bool:
        """The answer arrived whole (read or not) on a connection that stays open."""
        return self.done and self.keep_alive and not self.closed and self.error is None

    def drainable(self) -> bool:
        """The answer is closed before its end, but its end is on the way: worth reading to keep the connection."""
        return not self.done and self.status != 0 and self.keep_alive and self.error is None and not self.closed \
            and not self.close_delimited and self.transport is not None


class WireResponse:
    """An upstream answer: ``status_code``, case-insensitive ``headers``, ``aiter_bytes()`` and ``aclose()``
    (the little of ``httpx.Response`` the proxy uses). Closing it returns a fully read connection to the pool
    and closes any other."""

    __slots__ = ("status_code", "headers", "_connection", "_pool", "_closed")

    def __init__(self, connection: _Connection, pool: "WirePool") -> None:
        self._connection, self._pool, self._closed = connection, pool, False
        self.status_code = connection.status
        self.headers: Mapping[str, str] = CIMultiDict(connection.raw_headers)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is everything buffered when it is read."""
        connection = self._connection
        encoding = self.headers.get("content-encoding", "").strip().lower()
        decoder = _decoder(encoding) if encoding and encoding != "identity" else None
        while True:
            if connection.chunks:
                data = connection.take()
                if decoder is None:
                    yield data
                else:
                    for piece in _decoded(decoder, data):
                        yield piece
                continue
            if connection.error is not None:
                raise connection.error
            if connection.done:
                if decoder is not None:
                    rest = decoder.flush()
                    if rest:
                        yield rest
                return
            await connection.wait()

    def whole_body(self) -> bytes | None:
        """The whole body if it has already arrived unencoded (a small answer usually comes in the same read as
        its head), else None: then read it with :meth:`aiter_bytes`."""
        connection = self._connection
        if not connection.done or connection.error is not None or "content-encoding" in self.headers:
            return None
        return connection.take() if connection.chunks else b""

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.release(self._connection)


def _decoder(encoding: str):
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise httpx.DecodingError(f"the upstream answered in an encoding subrelay did not ask for ({encoding[:40]})")


def _decoded(decoder, data: bytes):
    try:
        piece = decoder.decompress(data, _DECODED_PIECE)
        while True:
            if piece:
                yield piece
            tail = decoder.unconsumed_tail
            if not tail:
                return
            piece = decoder.decompress(tail, _DECODED_PIECE)
    except zlib.error as exc:
        raise httpx.DecodingError(f"the upstream's compressed answer is corrupt ({exc})") from None


class WirePool:
    """Keep-alive connections per origin, at most ``max_connections`` in all (a caller past it waits up to the
    pool timeout), at most ``max_keepalive`` idle per origin."""

    def __init__(self, ssl_context: ssl.SSLContext | None, timeout: httpx.Timeout, max_connections: int | None,
                 max_keepalive: int | None, keepalive_expiry: float | None) -> None:
        self._ssl = ssl_context
        self._connect, self._read, self._write, self._pool_timeout = \
            timeout.connect, timeout.read, timeout.write, timeout.pool
        self._max = max_connections or 1 << 30
        self._max_idle = max_keepalive if max_keepalive is not None else 64
        self._expiry = keepalive_expiry if keepalive_expiry is not None else 5.0
        self._idle: dict[tuple, deque[_Connection]] = {}
        self._origins: dict[str, _Origin] = {}
        self._in_use = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._names: set[str] = set()  # header names already checked
        self._closing = False

    def origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            if len(self._origins) >= 256:  # bounded, in case an adapter ever puts variable parts in a URL
                self._origins.clear()
            origin = self._origins[url] = _Origin(url)
        return origin

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> WireResponse:
        origin = self.origin(url)
        head = self._head(method, origin, headers, body)
        await self._admit()
        try:
            connection = self._idle_connection(origin) or await self._connect_to(origin)
        except BaseException:
            self._leave()
            raise
        try:
            return await self._exchange(connection, head, body)
        except BaseException:
            self._drop(connection)
            raise

    def _head(self, method: str, origin: _Origin, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = [f"{method} {origin.target} HTTP/1.1", "Host: " + origin.host_header]
        names = self._names
        for name, value in headers.items():
            if name not in names:
                if not _TOKEN.fullmatch(name):
                    raise httpx.LocalProtocolError(f"invalid header name {name[:40]!r}")
                if len(names) < 1024:
                    names.add(name)
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            raise httpx.LocalProtocolError("a header value has a line break in it")
        return (text + "\r\n\r\n").encode("utf-8")

    async def _admit(self) -> None:
        if self._closing:
            raise httpx.ConnectError("subrelay is shutting down")
        if self._in_use < self._max and not self._waiters:
            self._in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._pool_timeout):
                await waiter  # release() hands its slot over: _in_use stays counted
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self._leave()  # granted just as time ran out: hand it on
            raise httpx.PoolTimeout("every upstream connection stayed busy for the pool timeout") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._leave()
            raise
        finally:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def _leave(self) -> None:
        """One slot free: handed to the first caller still waiting, else counted free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be alive
            if connection.closed or now - connection.idle_since > self._expiry or connection.transport.is_closing():
                connection.closed = True
                connection.transport.abort()
                continue
            return connection
        return None

    async def _connect_to(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(origin, loop, self._read)
        secure = origin.scheme == "https"
        try:
            async with asyncio.timeout(self._connect):
                await loop.create_connection(lambda: connection, origin.host, origin.port,
                                             ssl=(self._ssl or True) if secure else None,
                                             server_hostname=origin.host if secure else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {origin.host}:{origin.port} took too long") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return connection

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes) -> WireResponse:
        loop = connection.loop
        connection._reset()
        connection.head = head_ready = loop.create_future()
        connection.last_read = loop.time()
        transport = connection.transport
        if len(body) <= 65536:
            transport.write(head + body if body else head)
        else:
            transport.write(head)
            transport.write(body)
        if connection.drained is not None and not connection.drained.done():
            try:
                async with asyncio.timeout(self._write):
                    await connection.drained
            except TimeoutError:
                raise httpx.WriteTimeout("the upstream did not take the request body in time") from None
        if connection.closed and not connection.got_bytes and connection.error is None:
            connection._fail(httpx.RemoteProtocolError("the upstream closed the connection without an answer"))
        connection._arm_timer()
        if not head_ready.done():
            await head_ready
        if connection.error is not None:
            raise connection.error
        return WireResponse(connection, self)

    def release(self, connection: _Connection) -> None:
        """An answer closed: its connection goes back to the pool if the answer arrived whole; if its end is
        still on the way, the connection reads it (bounded by _DRAIN_SECONDS and _DRAIN_BYTES, the call's slot
        already free) and then goes back; else it closes."""
        connection._stop_timer()
        if self._closing:
            self._drop(connection)
            return
        if connection.reusable():
            self._park(connection)
            self._leave()
            return
        if connection.drainable():
            connection.chunks.clear()
            connection.buffered = 0
            connection.parked = self._park
            connection.drain_timer = connection.loop.call_later(_DRAIN_SECONDS, connection.abandon)
            if connection.paused:
                connection.paused = False
                connection.transport.resume_reading()
            self._leave()
            return
        self._drop(connection)

    def _park(self, connection: _Connection) -> None:
        """A connection whose answer is complete: idle in the pool, or closed if the pool has enough."""
        idle = self._idle.setdefault(connection.origin.key, deque())
        if self._closing or len(idle) >= self._max_idle:
            connection.closed = True
            connection.transport.abort()
            return
        connection.chunks.clear()
        if connection.paused:  # complete, with pieces nobody took: the next answer must be read
            connection.paused = False
            connection.transport.resume_reading()
        connection.head = None  # idle: bytes arriving now mean it is unusable
        connection.idle_since = connection.loop.time()
        idle.append(connection)

    def _drop(self, connection: _Connection) -> None:
        connection._stop_timer()
        connection.closed = True
        if connection.transport is not None:
            connection.transport.abort()
        self._leave()

    async def aclose(self) -> None:
        self._closing = True
        for idle in self._idle.values():
            for connection in idle:
                connection.closed = True
                connection.transport.abort()
        self._idle.clear()
