"""The Responses API over WebSocket: ``GET /v1/responses`` (and ``/responses``) with ``Upgrade: websocket``.

The protocol the OpenAI SDKs' ``responses.connect()``, the Agents SDK's websocket transport and the
Codex CLI's built-in provider speak: each ``response.create`` message is the body of a
``POST /v1/responses`` (``stream`` implied, ``stream_id`` echoed), answered with the same events as
the SSE stream, one JSON text frame each, through the HTTP door's own code
(:func:`proxy.doors.responses.endpoint.respond`), so every provider works as over HTTP. Responses
follow one another on one socket; messages that arrive while one runs wait their turn.

``previous_response_id`` resolves from the socket's own record first, then the app's: Codex sends
``store: false`` and chains its next turn on the last one, so the socket keeps its answers whatever
``store`` says (the app's record only when ``store`` allows). ``generate: false`` (Codex's prewarm)
is answered here, without an upstream call: an empty completed response whose id can be chained.

Bounds: a message over ``max_body_bytes`` is refused with an error frame; a socket with no message
for ``websocket_idle_seconds`` between responses is closed (1000); each response has the HTTP
request's deadlines (its :class:`proxy.upstream.client.StreamClock`); the socket closing mid-response
cancels the upstream. A bad message gets an ``error`` frame and the socket stays usable.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from proxy.doors.responses.endpoint import respond
from proxy.doors.responses.request import input_items
from proxy.doors.responses.socket_frames import error_frame, event_frame
from proxy.doors.responses.socket_store import SocketStore
from proxy.doors.responses.store import expand_previous
from proxy.doors.responses.stream import ResponsesEncoder
from proxy.errors import AuthenticationFailed, BadRequest, InternalError, PayloadTooLarge, ProxyError
from proxy.hub.checks import required_model
from proxy.hub.event_stream import EventStreamResponse
from proxy.hub.model import Inbound, ModelRequest
from proxy.hub.sse import SSEDecoder
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger
from proxy.upstream.dispatch import ADMISSION

log = get_logger("subrelay.websocket")

MAX_QUEUED_MESSAGES = 32  # messages waiting behind a running response; past it, each is refused at once
_MESSAGE_COST = 512  # bytes a queued message costs beyond its payload (the dict, the queue slot)
_IGNORED = frozenset({"response.processed"})  # older Codex CLIs acknowledge each response; nothing to do
_NOT_BODY = ("type", "stream_id", "generate", "stream")  # protocol fields, not the POST body's


async def responses_socket(websocket: WebSocket) -> None:
    """One client socket: accept, then answer its ``response.create`` messages in turn."""
    state = websocket.app.state.subrelay
    await websocket.accept()
    session = _Session(websocket, state)
    log.info("websocket session opened (%s)", websocket.url.path)
    try:
        await session.run()
    finally:
        log.info("websocket session closed after %d responses (%s)", session.answered, websocket.url.path)


class _Session:
    def __init__(self, websocket: WebSocket, state: Any) -> None:
        self.websocket = websocket
        self.state = state
        self.limits = state.settings.limits
        self.store = SocketStore(state.responses)
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.queued_bytes = 0  # messages waiting while a response runs, bounded by max_body_bytes
        self.queued_messages = 0  # ... and in number (each costs memory of its own, however small)
        self.overflow_waiting = False  # a 'too many queued' refusal is in the inbox: later ones are dropped
        self.gone = asyncio.Event()
        self.current: asyncio.Task | None = None
        self.streaming = False  # the running response's stream has started (it stops itself on a close)
        self.answered = 0

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        idle = self.limits.websocket_idle_seconds
        deadline = time.monotonic() + idle  # only real work (a response) moves it: not acks, not junk
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.inbox.get(), max(deadline - time.monotonic(), 0.0))
                except TimeoutError:
                    await self._close(1000, "idle")
                    return
                if message is None:
                    return
                self.queued_bytes -= message.get("_size", 0)
                self.queued_messages -= 1
                if "_overflow" in message:
                    self.overflow_waiting = False
                self.current = asyncio.create_task(self._handle(message))
                try:
                    if await asyncio.shield(self.current):
                        deadline = time.monotonic() + idle
                except asyncio.CancelledError:
                    if not self.gone.is_set():
                        self.current.cancel()
                        raise
                finally:
                    self.current = None
                if self.gone.is_set():
                    return
        finally:
            reader.cancel()

    async def _read(self) -> None:
        """Every incoming message into the inbox (checked for size here, so a running response
        never waits behind a huge one); a disconnect cancels the running response."""
        limit = self.limits.max_body_bytes
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.gone.set()
                if self.current is not None and not self.streaming:
                    self.current.cancel()  # still opening the upstream: stop that
                self.queued_messages += 1
                self.inbox.put_nowait(None)
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            size = len(data) + _MESSAGE_COST  # what a queued message costs beyond its payload
            self.queued_messages += 1
            if size - _MESSAGE_COST > limit:
                self.inbox.put_nowait({"_refused": PayloadTooLarge(
                    f"The message is larger than this proxy accepts ({limit} bytes; SUBRELAY_MAX_BODY_BYTES).")})
            elif (self.queued_bytes + size > limit or self.queued_messages > MAX_QUEUED_MESSAGES) and \
                    not self.inbox.empty():
                if self.overflow_waiting:  # one refusal waits already: this message is dropped, costing nothing
                    self.queued_messages -= 1
                    continue
                self.overflow_waiting = True
                self.inbox.put_nowait({"_overflow": True, "_refused": PayloadTooLarge(
                    "Too many messages are waiting on this socket; send the next one after the current response "
                    "(messages sent meanwhile were dropped).", code="too_many_queued_messages")})
            else:
                self.queued_bytes += size
                self.inbox.put_nowait({"_data": data, "_size": size})

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Answer one message; True when it was real work (a response), which keeps the socket open."""
        if "_refused" in message:
            await self._send_error(message["_refused"])
            return False
        try:
            event = orjson.loads(message["_data"])
        except orjson.JSONDecodeError:
            await self._send_error(BadRequest("The message is not valid JSON.", code="invalid_json"))
            return False
        if not isinstance(event, dict):
            await self._send_error(BadRequest("Each message must be a JSON object with a 'type'.", code="invalid_json"))
            return False
        kind = event.get("type")
        stream_id = event.get("stream_id") if isinstance(event.get("stream_id"), str) else None
        if kind in _IGNORED:
            return False
        if kind != "response.create":
            await self._send_error(BadRequest(
                f"Unknown message type {str(kind)[:64]!r}; this socket accepts 'response.create'.", param="type",
                code="unknown_message_type"), stream_id)
            return False
        try:
            return await self._create(event, stream_id)
        except (WebSocketDisconnect, OSError):
            self.gone.set()
            return False

    async def _create(self, event: dict[str, Any], stream_id: str | None) -> None:
        """One response: ``respond()`` as for ``POST /v1/responses``, its SSE relayed as frames. A team
        user's socket admits each response on its own (their key checked again, their limits reserved and
        settled, their usage counted), as each POST would be."""
        record = RequestRecord(os.urandom(16).hex(), "WS", self.websocket.url.path)
        admission = None
        connection = self.websocket.scope.get("subrelay.admission")
        try:
            if connection is not None:
                admission = await connection.gate.readmit(connection.user)
            elif await self._keys_now_required():
                raise AuthenticationFailed("Team mode started after this socket opened: reconnect with your "
                                           "subrelay key.", code="invalid_api_key")
        except ProxyError as error:
            record.status = error.status_code
            await self._send_error(error, stream_id)
            record.finish()
            if isinstance(error, AuthenticationFailed) and connection is None:
                await self._close(1008, "key required")
                self.gone.set()
            return False
        token = ADMISSION.set(admission)
        body = {key: value for key, value in event.items() if key not in _NOT_BODY}
        body["stream"] = True
        try:
            if event.get("background") is True:
                raise BadRequest("'background' is not supported over WebSocket.", param="background",
                                 code="unsupported_parameter")
            generate = event.get("generate", True)
            if not isinstance(generate, bool):
                raise BadRequest("'generate' must be a boolean.", param="generate", code="invalid_type")
            self.store.share = body.get("store") is not False
            if not generate:
                await self._prepare_only(body, record, stream_id)
                return True
            response = await respond(self.state, body, orjson.dumps(body), record, self.store)
            if not isinstance(response, EventStreamResponse):
                raise InternalError("The Responses door answered a WebSocket request without a stream.")
            record.status = 200
            await self._relay(response, record, stream_id)
            self.answered += 1
            return True
        except ProxyError as error:
            record.status = error.status_code
            await self._send_error(error, stream_id)
            return False
        finally:
            caller = self.websocket.scope.get("subrelay.caller")
            if caller is not None:
                record.person = caller.person
            record.finish()
            ADMISSION.reset(token)
            ledger = self.state.gate.ledger if self.state.gate is not None else None
            if ledger is not None:  # one ledger entry per response on the socket, as per POST
                ledger.add(record, self.websocket.headers.get("user-agent", "").encode("latin-1") or None)
            if admission is not None:
                await admission.settle(record)

    async def _relay(self, response: EventStreamResponse, record: RequestRecord, stream_id: str | None) -> None:
        """Run the HTTP stream with the socket as its client: each SSE event becomes a text frame, and
        the socket closing is the client going away (the stream then closes its upstream)."""
        decoder = SSEDecoder()
        websocket, gone = self.websocket, self.gone

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] != "http.response.body" or gone.is_set():
                return
            for event in decoder.feed(message.get("body", b"")):
                frame = event_frame(event, stream_id)
                if frame is not None:
                    if record.first_byte is None:
                        record.first_byte = time.perf_counter()
                    await websocket.send_text(frame)

        self.streaming = True
        try:
            await response({"type": "http"}, receive, send)
        finally:
            self.streaming = False

    async def _prepare_only(self, body: dict[str, Any], record: RequestRecord, stream_id: str | None) -> None:
        """``generate: false``: the request state is kept, no model output (an empty completed response)."""
        model = required_model(body)
        routes = self.state.router.candidates(model)  # an unknown model is refused now, as it would be later
        body = expand_previous(body, self.store)
        request = ModelRequest(model=model, inbound=Inbound("responses", body, b""))
        try:  # where the upstream has a socket (Codex), it loads the request too; best effort
            if await self.state.upstream.prewarm(routes[0], request):
                record.note("generate=false: relayed on the upstream socket")
        except ProxyError as error:
            log.info("prewarm not relayed upstream: %s", error.message)
        encoder = ResponsesEncoder(request)
        data = encoder.start() + encoder.finish()
        share, self.store.share = self.store.share, False  # kept on this socket only: a prewarm is not admitted,
        try:  # so it must not take room in the record every member's stored conversations share
            self.store.put(encoder.id, input_items(body), [])
        finally:
            self.store.share = share
        record.status, record.model = 200, model
        record.note("generate=false: answered here")
        for payload in _sse_payloads(data):
            await self.websocket.send_text(_with_stream_id(payload, stream_id))
        self.answered += 1

    async def _keys_now_required(self) -> bool:
        """A socket opened with no key (no keys were needed then) once team mode is on: it must not go
        on being served with the owner's login."""
        caller = self.websocket.scope.get("subrelay.caller")
        if caller is not None and caller.kind != "anonymous":
            return False
        gate = getattr(self.state, "gate", None)
        return gate is not None and await gate.active()

    async def _send_error(self, error: ProxyError, stream_id: str | None = None) -> None:
        if self.gone.is_set():
            return
        try:
            await self.websocket.send_text(error_frame(error, stream_id))
        except Exception:  # the socket went away meanwhile
            self.gone.set()

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code, reason)
        except Exception:
            pass


def _sse_payloads(data: bytes) -> list[bytes]:
    return [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]


def _with_stream_id(payload: bytes, stream_id: str | None) -> str:
    if stream_id is None:
        return payload.decode()
    return orjson.dumps({**orjson.loads(payload), "stream_id": stream_id}).decode()
