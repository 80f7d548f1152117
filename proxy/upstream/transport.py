"""The shared upstream HTTP client: httpx's API over aiohttp's C-accelerated HTTP/1.1 engine.

Measured on this project's benchmark (benchmarks/README.md): httpx's default transport costs about
0.84 ms of CPU per small request and 4.3 ms per 200-delta stream; the aiohttp transport from
``httpx-aiohttp`` costs 0.49 ms and 1.7 ms. Everything above the transport (requests, responses,
exceptions, respx in tests) stays httpx. ``SUBRELAY_UPSTREAM_TRANSPORT=httpx`` switches back.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from proxy.config.settings import Settings
from proxy.upstream.wire import WirePool


class FastTransport(AiohttpTransport):
    """``AiohttpTransport`` with exact exception classes (its table reports a refused connection and a
    dropped one as timeouts, which would turn our 502s into 504s), and the owner of the model calls' own
    connection pool (:mod:`proxy.upstream.wire`), closed with it."""

    _wire: WirePool | None = None

    def wire_pool(self, timeout: httpx.Timeout) -> WirePool:
        """The pool model calls go through: this transport's limits and SSL context, the client's timeouts."""
        if self._wire is None:
            self._wire = WirePool(self.ssl_context, timeout, self.limits.max_connections,
                                  self.limits.max_keepalive_connections, self.limits.keepalive_expiry)
        return self._wire

    async def aclose(self) -> None:
        if self._wire is not None:
            await self._wire.aclose()
        await super().aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TimeoutException as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, aiohttp.ServerTimeoutError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, aiohttp.ServerTimeoutError):
                raise httpx.ReadError(str(cause), request=request) from cause
            raise


def upstream_client(settings: Settings) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` every upstream call and token refresh goes through."""
    t = settings.timeouts
    timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=64)
    if settings.upstream_transport == "httpx":
        return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)
    return httpx.AsyncClient(timeout=timeout, transport=FastTransport(limits=limits), follow_redirects=False)
