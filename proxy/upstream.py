"""Sending a translated request upstream: auth retry, adapter retry, error mapping, event batches.

The rules live here once for every adapter: a 401 triggers exactly one forced credential refresh and
one replay (never a loop); an adapter may ask for one alternative request after a specific rejection;
any other error status becomes the adapter's :class:`ProxyError`. Connection failures and timeouts
become 502 and 504.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from .chat import ChatRequest
from .errors import AuthenticationFailed, ProxyError, UpstreamFailure, UpstreamTimeout
from .events import ChatEvent, StreamFailure, StreamTranslator, TextDelta, ToolCallArguments, ToolCallStart
from .redact import get_logger
from .routing import Route
from .sse import SSEDecoder

log = get_logger("subrelay.upstream")

_MAX_ERROR_BODY = 64 * 1024


class UpstreamClient:
    """Opens upstream responses with the shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def open(self, route: Route, chat: ChatRequest) -> httpx.Response:
        """Send ``chat`` along ``route`` and return the streaming 200 response (caller closes it)."""
        adapter = route.provider.adapter
        source = route.provider.credentials
        credential = await source.current()
        request = adapter.build_request(chat, route.upstream_model, credential)
        refreshed = rebuilt = False
        while True:
            response = await self._send(request)
            if response.status_code < 400:
                return response
            body = await _read_error_body(response)
            status = response.status_code
            if status == 401 and not refreshed and getattr(source, "can_refresh", False):
                refreshed = True
                log.info("%s answered 401; refreshing the credential once and replaying", route.provider.name)
                credential = await source.refresh(stale=credential)
                request = adapter.build_request(chat, route.upstream_model, credential)
                continue
            if not rebuilt:
                retry = adapter.retry_after_rejection(request, status, body, chat, route.upstream_model, credential)
                if retry is not None:
                    rebuilt = True
                    log.info("%s rejected the request (%s); retrying once as the adapter suggests", route.provider.name, status)
                    request = retry
                    continue
            error = adapter.error_from_response(status, response.headers, body)
            if status == 401 and not isinstance(error, AuthenticationFailed):
                error = AuthenticationFailed(error.message)
            log.warning("%s answered %s: %s", route.label, status, error.message)
            raise error

    async def _send(self, request) -> httpx.Response:
        try:
            built = self.http.build_request(request.method, request.url, headers=request.headers, content=request.body)
            return await self.http.send(built, stream=True)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"The upstream at {_origin(request.url)} did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure(
                f"Could not connect to the upstream at {_origin(request.url)} ({type(exc).__name__})."
            ) from None


async def translated_batches(response: httpx.Response, translator: StreamTranslator) -> AsyncIterator[list[ChatEvent]]:
    """Decode the upstream SSE and translate it, one list of events per network read.

    A failure of the connection mid-stream becomes a :class:`StreamFailure` event, so callers handle
    every ending the same way. The response is closed when the generator is closed.
    """
    decoder = SSEDecoder()
    feed = translator.feed
    try:
        async for chunk in response.aiter_bytes():
            batch: list[ChatEvent] = []
            for event in decoder.feed(chunk):
                batch += feed(event)
            yield batch
            if translator.finished:
                return
        batch = []
        for event in decoder.flush():
            batch += feed(event)
        batch += translator.close()
        yield batch
    except httpx.TimeoutException:
        yield [StreamFailure(UpstreamTimeout("The upstream stopped sending before the response was complete."))]
    except httpx.HTTPError as exc:
        yield [StreamFailure(UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__})."))]
    finally:
        await response.aclose()


async def passthrough_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """Relay an upstream that already speaks Chat Completions SSE, byte for byte (after removing
    any content-encoding, since the client gets our headers, not the upstream's)."""
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx.TimeoutException:
        yield b"data: " + UpstreamTimeout("The upstream stopped sending mid-response.").to_json() + b"\n\n"
    except httpx.HTTPError as exc:
        yield b"data: " + UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__}).").to_json() + b"\n\n"
    finally:
        await response.aclose()


async def _read_error_body(response: httpx.Response) -> bytes:
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _MAX_ERROR_BODY:
                break
        return b"".join(chunks)[:_MAX_ERROR_BODY]
    except httpx.HTTPError:
        return b""
    finally:
        await response.aclose()


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}"


def first_failure(events: list[ChatEvent]) -> ProxyError | None:
    """The error, if ``events`` fail before delivering any answer (text or tool call)."""
    for event in events:
        if isinstance(event, StreamFailure):
            return event.error
        if isinstance(event, (TextDelta, ToolCallStart, ToolCallArguments)):
            return None
    return None
