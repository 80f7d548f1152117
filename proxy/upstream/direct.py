"""The hot path's upstream calls on subrelay's own HTTP/1.1 client (:mod:`proxy.upstream.wire`), without httpx's
request and response objects.

The shared ``httpx.AsyncClient`` (its aiohttp transport, :mod:`proxy.upstream.transport`) stays the client of
everything else (logins, catalogues, usage). For model calls, httpx's layer cost more than the rest of the
request put together (issue 21), and aiohttp's ``ClientSession.request`` under it was then the largest single
cost (issue 33: about a third of a small request's instructions). This module sends model calls through a
:class:`~proxy.upstream.wire.WirePool` with the httpx client's default headers, timeouts and SSL context, and
hands back a response with the little of ``httpx.Response`` the proxy uses: ``status_code``, ``headers``,
``aiter_bytes()`` and ``aclose()``. Failures are the httpx exceptions the callers already handle, so a refused
connection is still a 502 and a read timeout a 504. With ``SUBRELAY_UPSTREAM_TRANSPORT=httpx`` (what respx
tests patch) none of this is used.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from proxy.upstream.wire import WirePool, WireResponse

# httpx's defaults that the wire client sets itself: the connection is kept alive (HTTP/1.1's default), and
# the encodings it decodes (zlib's two, as aiohttp asked for) are the ones offered.
_SET_HERE = frozenset({"accept-encoding", "connection"})
_ENCODINGS = {"Accept-Encoding": "gzip, deflate"}


class DirectSender:
    """Sends one upstream request on the wire pool with the httpx client's headers."""

    __slots__ = ("_pool", "_defaults")

    def __init__(self, pool: WirePool, http: httpx.AsyncClient) -> None:
        self._pool = pool
        self._defaults = {name: value for name, value in http.headers.items() if name not in _SET_HERE}
        self._defaults.update(_ENCODINGS)

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> WireResponse:
        merged = self._defaults
        if headers:
            lowered = {name.lower() for name in headers}
            merged = {name: value for name, value in merged.items() if name.lower() not in lowered}
            merged.update(headers)
        return await self._pool.send(method, url, merged, body or b"")


def direct_sender(http: httpx.AsyncClient) -> DirectSender | None:
    """A sender on the wire pool of ``http``'s transport, or None when ``http`` runs on another transport
    (httpx's own, a test's mock): then every call goes through httpx as before."""
    from proxy.upstream.transport import FastTransport

    transport = getattr(http, "_transport", None)
    if not isinstance(transport, FastTransport):
        return None
    return DirectSender(transport.wire_pool(http.timeout), http)
