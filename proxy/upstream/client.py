"""Sending a translated request upstream: auth retry, adapter retry, error mapping, event batches.

The rules live here once for every adapter: a 401 triggers exactly one forced credential refresh and
one replay (never a loop); an adapter may ask for one alternative request after a specific rejection;
any other error status becomes the adapter's :class:`ProxyError`. Connection failures and timeouts
become 502 and 504.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from proxy.errors import (
    AuthenticationFailed,
    ProxyError,
    UpstreamFailure,
    UpstreamTimeout,
)
from proxy.hub.events import (
    AnswerEvent,
    StreamFailure,
    StreamTranslator,
    Usage,
)
from proxy.hub.sse import MAX_EVENT_BYTES, SSEDecoder, SSEEventTooLarge
from proxy.hub.usage import usage_in_body, usage_in_stream
from proxy.observe.redact import PartialEventTooLarge, RelayedEvents, get_logger, redact_relayed_body
from proxy.upstream.direct import direct_sender
from proxy.upstream.routing import Route, credential_identity

# Largest non-streaming answer relayed from an upstream.
MAX_UPSTREAM_BODY = 64 * 1024 * 1024

log = get_logger("subrelay.upstream")

_MAX_ERROR_BODY = 64 * 1024


@dataclass(slots=True)
class StreamClock:
    """The two bounds on one request's upstream time, besides the per-read timeout.

    ``total``: the whole request, first byte to last. ``stall``: the longest time without a
    *meaningful* event (text, a tool call, a finish); keep-alive comments and pings do not count,
    so an upstream that only pings cannot hold a client forever.
    """

    total: float
    stall: float
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    last_progress: float = 0.0

    def __post_init__(self) -> None:
        self.last_progress = self.started

    def progressed(self) -> None:
        self.last_progress = asyncio.get_running_loop().time()

    def next_deadline(self) -> float:
        return min(self.started + self.total, self.last_progress + self.stall)

    def timeout_error(self) -> UpstreamTimeout:
        now = asyncio.get_running_loop().time()
        if now >= self.started + self.total - 0.001:
            return UpstreamTimeout(
                f"The request took longer than subrelay's limit of {self.total:g} s (SUBRELAY_REQUEST_TIMEOUT).",
                code="request_deadline_exceeded")
        return UpstreamTimeout(
            f"The upstream sent nothing but keep-alives for {self.stall:g} s (SUBRELAY_STALL_TIMEOUT).",
            code="upstream_stalled")


async def timed_chunks(chunks: AsyncIterator[bytes], clock: StreamClock | None) -> AsyncIterator[bytes]:
    """``chunks``, with every wait for the next one bounded by ``clock`` (raises its timeout error).

    One timer per stream, not per chunk (a per-read ``asyncio.timeout`` cost about 6 µs a chunk, a
    millisecond on a 200-delta stream): the watchdog sleeps until the clock's next deadline and,
    when it wakes, either finds that progress moved the deadline (and sleeps again) or cancels the
    read that is waiting on the upstream. A wait for the *client* (a slow reader) is never cut short.
    """
    iterator = chunks.__aiter__()
    if clock is None:
        async for chunk in iterator:
            yield chunk
        return
    loop = asyncio.get_running_loop()
    reader: asyncio.Task | None = None  # the task waiting on the upstream right now, if any
    fired = False
    handle: asyncio.TimerHandle | None = None

    def watchdog() -> None:
        nonlocal handle, fired
        now, deadline = loop.time(), clock.next_deadline()
        if now >= deadline and reader is not None:
            fired, handle = True, None
            reader.cancel()
            return
        handle = loop.call_at(deadline if deadline > now else now + 0.25, watchdog)

    handle = loop.call_at(clock.next_deadline(), watchdog)
    try:
        while True:
            reader = asyncio.current_task()
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if fired and reader is not None:
                    reader.uncancel()
                    raise clock.timeout_error() from None
                raise
            finally:
                reader = None
            yield chunk
    finally:
        if handle is not None:
            handle.cancel()


_PARSED_URLS: dict[str, httpx.URL] = {}


def _parsed_url(url: str) -> httpx.URL:
    """``url`` parsed once: httpx parses every URL string in pure Python (about a tenth of a
    small request's CPU here), and upstream URLs are a handful of fixed strings per provider."""
    parsed = _PARSED_URLS.get(url)
    if parsed is None:
        if len(_PARSED_URLS) >= 256:  # bounded, in case an adapter ever puts variable parts in a URL
            _PARSED_URLS.clear()
        parsed = _PARSED_URLS[url] = httpx.URL(url)
    return parsed


class UpstreamClient:
    """Opens upstream responses with the shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, sockets: Any = None) -> None:
        self.http = http
        self.direct = direct_sender(http)  # model calls skip httpx's objects on its aiohttp transport
        self.sockets = sockets  # proxy.upstream.sockets.SocketPool: the Codex WebSocket, or None (HTTP only)

    async def open(self, route: Route, chat: Any, extra_headers: dict[str, str] | None = None) -> httpx.Response:
        """Send ``chat`` along ``route`` and return the streaming 200 response (caller closes it).
        ``extra_headers`` (a trace's ``traceparent``) go on every try."""
        adapter = route.provider.adapter
        source = route.provider.credentials
        credential = await source.current()
        request = adapter.build_request(chat, route.upstream_model, credential)
        if extra_headers:
            request.headers.update(extra_headers)
        refreshed = rebuilt = False
        while True:
            response = await self._send(request, route)
            if response.status_code < 400:
                return response
            body = await _read_error_body(response)
            status = response.status_code
            if status == 401 and not refreshed and getattr(source, "can_refresh", False):
                refreshed = True
                log.info("%s answered 401; refreshing the credential once and replaying", route.provider.name)
                credential = await source.refresh(stale=credential)
                request = adapter.build_request(chat, route.upstream_model, credential)
                if extra_headers:
                    request.headers.update(extra_headers)
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
            error.credential_identity = credential_identity(credential)  # what a cooldown applies to
            log.warning("%s answered %s: %s", route.label, status, error.message)
            raise error

    async def prewarm(self, route: Route, chat: Any) -> bool:
        """A client's ``generate: false`` relayed on the upstream's WebSocket, where it has one (the
        Codex backend); False when it was not (nothing else happens: the next turn then goes in full)."""
        if self.sockets is None:
            return False
        credential = await route.provider.credentials.current()
        request = route.provider.adapter.build_request(chat, route.upstream_model, credential)
        if not request.context.get("websocket"):
            return False
        return await self.sockets.prewarm(request)

    async def _send(self, request, route: Route) -> httpx.Response:
        """One upstream call; a failure names the provider (a down local server is the usual cause) and
        gets a warning line, since the client's error may never reach whoever runs subrelay."""
        name = route.provider.name
        if self.sockets is not None and request.context.get("websocket"):
            answer = await self.sockets.open(request)
            if answer is not None:  # None: this one goes over HTTP (refused upgrade, every socket busy)
                return answer
        try:
            if self.direct is not None:
                return await self.direct.send(request.method, request.url, request.headers, request.body)
            built = self.http.build_request(request.method, _parsed_url(request.url), headers=request.headers,
                                            content=request.body)
            return await self.http.send(built, stream=True)
        except httpx.TimeoutException:
            log.warning("provider %s (%s) did not answer in time", name, _origin(request.url))
            raise UpstreamTimeout(f"The provider {name} ({_origin(request.url)}) did not answer in time.") from None
        except httpx.HTTPError as exc:
            log.warning("provider %s is unreachable at %s (%s)", name, _origin(request.url), type(exc).__name__)
            raise UpstreamFailure(
                f"Could not connect to the provider {name} at {_origin(request.url)} ({type(exc).__name__}); "
                f"is it running?"
            ) from None


async def translated_batches(
    response: httpx.Response, translator: StreamTranslator, clock: StreamClock | None = None, record=None
) -> AsyncIterator[list[AnswerEvent]]:
    """Decode the upstream SSE and translate it, one list of events per network read.

    A failure of the connection mid-stream (or a broken, oversized or stalled stream) becomes a
    :class:`StreamFailure` event, so callers handle every ending the same way. The response is
    closed when the generator is closed.
    """
    decoder = SSEDecoder()
    feed = translator.feed
    feed_events = getattr(translator, "feed_events", None)  # a translator's own loop over a read's events
    # An upstream that hands over events (the Codex WebSocket) is read without SSE text in between.
    events_of = getattr(response, "aiter_events", None)
    try:
        async for chunk in timed_chunks(events_of() if events_of is not None else response.aiter_bytes(), clock):
            events = chunk if events_of is not None else decoder.feed(chunk)
            if feed_events is not None:
                batch = feed_events(events)
            else:
                batch = []
                for event in events:
                    batch += feed(event)
            if record is not None:
                if events_of is not None:  # counted as the SSE frames they stand for
                    record.relayed_frames += len(events)
                    record.relayed_bytes += sum([len(event.data) + len(event.event) + 16 for event in events])
                else:
                    record.relayed_frames += chunk.count(b"data:")
                    record.relayed_bytes += len(chunk)
            if batch and clock is not None:
                clock.progressed()
                if record is not None and type(batch[-1]) is Usage:
                    record.usage = batch[-1]
            yield batch
            if translator.finished:
                return
        batch = []
        for event in decoder.flush():
            batch += feed(event)
        batch += translator.close()
        if record is not None and batch and type(batch[-1]) is Usage:
            record.usage = batch[-1]
        yield batch
    except ProxyError as exc:
        yield [StreamFailure(exc)]
    except SSEEventTooLarge as exc:
        yield [StreamFailure(UpstreamFailure(f"The upstream stream is malformed: {exc}.", code="upstream_event_too_large"))]
    except httpx.TimeoutException:
        yield [StreamFailure(UpstreamTimeout("The upstream stopped sending before the response was complete."))]
    except httpx.HTTPError as exc:
        yield [StreamFailure(UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__})."))]
    finally:
        await response.aclose()


async def passthrough_chunks(
    response: httpx.Response, clock: StreamClock | None = None, *, error_frame=None, record=None
) -> AsyncIterator[bytes]:
    """Relay an upstream that already speaks the client's format, byte for byte (after removing
    any content-encoding, since the client gets our headers, not the upstream's).

    A chunk with a ``data:`` line counts as progress; comments alone do not. A failure ends the
    stream with ``error_frame(error)`` (by default a Chat Completions ``data:`` error line).
    With a ``record``, the stream's usage goes on it: only the first chunk and the last two are
    kept (references, no copies) and scanned once, after the last byte was relayed.
    """
    frame = error_frame or (lambda error: b"data: " + error.to_json() + b"\n\n")
    head = previous = last = b""
    events = RelayedEvents(MAX_EVENT_BYTES)  # redacted per complete event, however the reads cut them
    try:
        async for chunk in timed_chunks(response.aiter_bytes(), clock):
            if clock is not None and b"data:" in chunk:
                clock.progressed()
            if not head:
                head = chunk
            previous, last = last, chunk
            if record is not None:
                record.relayed_frames += chunk.count(b"data:")
                record.relayed_bytes += len(chunk)
            out = events.feed(chunk)  # error events only are rewritten: content frames pass as they came
            if out:
                yield out
        rest = events.flush()
        if rest:
            yield rest
        if record is not None:
            record.usage = usage_in_stream(previous + last, head) or record.usage
    except PartialEventTooLarge as exc:
        yield frame(UpstreamFailure(f"The upstream stream is malformed: {exc}.", code="upstream_event_too_large"))
    except ProxyError as exc:
        yield frame(exc)
    except httpx.TimeoutException:
        yield frame(UpstreamTimeout("The upstream stopped sending mid-response."))
    except httpx.HTTPError as exc:
        yield frame(UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__})."))
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


async def read_whole(response: httpx.Response, clock: StreamClock | None, limit: int, record=None, *,
                     content: bool = True) -> bytes:
    """A non-streaming upstream body, bounded in time by ``clock`` and in size by ``limit``; with a
    ``record``, the body's usage goes on it (the body is parsed once more, only if it holds "usage").
    ``content=False`` for a body that is no answer to read (a token count, a compaction): every
    string in it is redacted, not only its errors (:func:`proxy.observe.redact.redact_relayed_body`)."""
    chunks: list[bytes] = []
    size = 0
    whole = getattr(response, "whole_body", None)  # the wire client's answer that already arrived whole
    body = whole() if whole is not None else None
    if body is not None:
        await response.aclose()
        if len(body) > limit:
            raise UpstreamFailure(f"The upstream answer exceeded {limit} bytes.", code="upstream_body_too_large")
        if record is not None:
            record.usage = usage_in_body(body) or record.usage
        return redact_relayed_body(body, content=content)
    try:
        async for chunk in timed_chunks(response.aiter_bytes(), clock):
            size += len(chunk)
            if size > limit:
                raise UpstreamFailure(f"The upstream answer exceeded {limit} bytes.", code="upstream_body_too_large")
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise UpstreamTimeout("The upstream stopped sending before the response was complete.") from None
    except httpx.HTTPError as exc:
        raise UpstreamFailure(f"The upstream connection broke mid-response ({type(exc).__name__}).") from None
    finally:
        await response.aclose()
    body = b"".join(chunks)
    if record is not None:
        record.usage = usage_in_body(body) or record.usage
    return redact_relayed_body(body, content=content)  # an upstream may echo a credential, even with 200


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}"
