"""The hot path's upstream calls straight on aiohttp's session, without httpx's request and response objects.

The shared ``httpx.AsyncClient`` (its aiohttp transport, :mod:`proxy.upstream.transport`) stays the client of
everything else (logins, catalogues, usage). For model calls, httpx's layer cost more than the rest of the
request put together: per request it built a URL, two ``Headers`` objects, cookie bookkeeping through
``urllib.request`` and ``email`` (about 270 Python calls), which was about a third of a small request's
instructions (benchmarks/README.md, issue 21). This module sends the same request through the same aiohttp
session (one connection pool) and hands back a :class:`DirectResponse` with the little of
``httpx.Response`` the proxy uses: ``status_code``, ``headers``, ``aiter_bytes()`` and ``aclose()``.
Failures are raised as the httpx exceptions the callers already handle, so a refused connection is still a
502 and a read timeout a 504. With ``SUBRELAY_UPSTREAM_TRANSPORT=httpx`` (what respx tests patch) none of
this is used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping

import aiohttp
import httpx

# httpx's defaults that aiohttp handles itself: the connection, and the encodings it can decode.
_LEFT_TO_AIOHTTP = frozenset({"accept-encoding", "connection"})


class DirectResponse:
    """An upstream answer read through aiohttp; closing it returns (or drops) the connection."""

    __slots__ = ("_response", "status_code", "headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers  # case-insensitive, like httpx.Headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, content-encoding removed: each piece is everything buffered when it is
        read (what ``readany()`` returns)."""
        content = self._response.content
        read = _read_buffered if _FAST_READ and type(content) is aiohttp.StreamReader else _readany
        try:
            while True:
                chunk = await read(content)
                if not chunk:
                    return
                yield chunk
        except aiohttp.ClientError as exc:
            raise as_httpx_error(exc) from exc

    async def aclose(self) -> None:
        self._response.release()  # a body read to the end keeps the connection; a partial one closes it


# Memory per stream is bounded by what is buffered between the upstream and the client: aiohttp's reader
# pauses the socket past 2 x READ_BUFSIZE, a socket read takes at most SOCKET_READ, and one read here hands
# out at most MAX_READ (benchmarks/probes/stalled_streams.py measures a stream whose client reads nothing).
READ_BUFSIZE = 8 * 1024
SOCKET_READ = 16 * 1024
MAX_READ = 16 * 1024

# The StreamReader internals _read_buffered uses; without any of them (another aiohttp), readany() is used.
_FAST_READ = {"_buffer", "_buffer_offset", "_size", "_cursor", "_http_chunk_splits", "_eof", "_exception", "_timer",
              "_protocol"} <= set(getattr(aiohttp.StreamReader, "__slots__", ())) and all(
    hasattr(aiohttp.StreamReader, name) for name in ("_wait", "_read_nowait"))


def _readany(content: aiohttp.StreamReader) -> Awaitable[bytes]:
    return content.readany()


async def _read_buffered(content: aiohttp.StreamReader) -> bytes:
    """``content.readany()`` without its per-HTTP-chunk Python.

    aiohttp's ``readany`` hands out what is buffered one HTTP chunk at a time, and for every chunk calls the
    protocol's ``resume_reading()``, which re-enters ``data_received(b"")``, paused or not: about seven Python
    calls per chunk, and an upstream SSE stream sends one chunk per event (benchmarks/README.md, issue 21).
    This joins the buffered chunks at once and resumes the protocol once, only when it was paused (a resume
    of an unpaused protocol does nothing: its parser holds nothing back unless reading was paused). The
    bytes, their order and the flow control are the same; an offset into a chunk or a single chunk takes
    aiohttp's own path."""
    if content._exception is not None:
        raise content._exception
    while not content._buffer and not content._eof:
        await content._wait("readany")
    buffer = content._buffer
    if len(buffer) < 2 or content._buffer_offset:
        return content._read_nowait(-1)
    content._timer.assert_timeout()
    if content._size <= MAX_READ:
        data = b"".join(buffer)
        buffer.clear()
    else:  # a backlog (a client slower than the upstream): hand out at most MAX_READ, the rest waits
        taken, size = [], 0
        while buffer and size < MAX_READ:
            piece = buffer.popleft()
            taken.append(piece)
            size += len(piece)
        data = b"".join(taken)
    size = len(data)
    content._size -= size
    cursor = content._cursor = content._cursor + size
    splits = content._http_chunk_splits
    while splits and splits[0] < cursor:  # as aiohttp drops them: offsets already handed out
        splits.popleft()
    protocol = content._protocol
    # Resumed (as aiohttp does) only once what is left is below the low-water mark: a stalled client
    # then holds the upstream back at a bounded buffer instead of the whole answer.
    if (getattr(protocol, "_reading_paused", True) or getattr(protocol, "_buffer_paused", True)) and \
            content._size < getattr(content, "_low_water", 0):
        protocol.resume_reading()
    return data


class DirectSender:
    """Sends one upstream request on aiohttp's session with the httpx client's headers and timeouts."""

    __slots__ = ("_session", "_defaults", "_timeout")

    def __init__(self, session: aiohttp.ClientSession, http: httpx.AsyncClient) -> None:
        self._session = session
        self._defaults = {name: value for name, value in http.headers.items() if name not in _LEFT_TO_AIOHTTP}
        t = http.timeout
        self._timeout = aiohttp.ClientTimeout(sock_connect=t.connect, sock_read=t.read, connect=t.pool)

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> DirectResponse:
        merged = dict(self._defaults)
        if headers:
            lowered = {name.lower() for name in headers}
            merged = {name: value for name, value in merged.items() if name not in lowered}
            merged.update(headers)
        try:
            response = await self._session.request(method, url, headers=merged, data=body or None,
                                                   allow_redirects=False, timeout=self._timeout,
                                                   read_bufsize=READ_BUFSIZE)
        except aiohttp.ClientError as exc:
            raise as_httpx_error(exc) from exc
        transport = getattr(response.connection, "transport", None)
        if transport is not None and getattr(transport, "max_size", 0) > SOCKET_READ:
            transport.max_size = SOCKET_READ  # asyncio reads up to 256 KiB at once otherwise
        return DirectResponse(response)


def direct_sender(http: httpx.AsyncClient) -> DirectSender | None:
    """A sender on the aiohttp session behind ``http``, or None when ``http`` runs on another transport
    (httpx's own, a test's mock): then every call goes through httpx as before."""
    from proxy.upstream.transport import FastTransport

    transport = getattr(http, "_transport", None)
    if not isinstance(transport, FastTransport):
        return None
    if not isinstance(transport.client, aiohttp.ClientSession):
        transport.client = transport.get_client()  # one session, one pool, for both paths
    return DirectSender(transport.client, http)


def as_httpx_error(exc: aiohttp.ClientError) -> httpx.HTTPError:
    """The httpx exception the callers map to a client error (502 for a connection, 504 for time)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerTimeoutError):  # read and connect timeouts (asyncio.TimeoutError too)
        return (httpx.ConnectTimeout if isinstance(exc, aiohttp.ConnectionTimeoutError) else httpx.ReadTimeout)(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.client_exceptions.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return httpx.ReadError(message)
    return httpx.RemoteProtocolError(message)  # a malformed answer: the upstream's fault, a 502
