"""The edge for WebSocket upgrades: the HTTP edge's checks, before a socket is accepted.

An upgrade is a ``GET`` with a Host, maybe an Origin (browsers always send one) and the client key,
so the same rules apply (:class:`proxy.server.edge.EdgeMiddleware`): a refused upgrade gets the
HTTP error it would have got as a request (403 for a foreign Host or Origin, 401 for a missing key),
with the same JSON body, and the socket is never opened. With ``SUBRELAY_WEBSOCKETS=0`` every
upgrade gets ``426 Upgrade Required`` at once, with no other check: the Codex CLI falls back to
HTTP for the rest of its session on a 426 only (any other status it retries for seconds first).

What happens on an accepted socket (message size, deadlines, error frames) is the door's
(:mod:`proxy.doors.responses.websocket`); an exception escaping it still never reaches the server.
"""

from __future__ import annotations

from typing import Any, Protocol

from proxy.errors import AuthenticationFailed, InternalError, ProxyError
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger



class Edge(Protocol):
    """What the socket checks use of :class:`proxy.server.edge.EdgeMiddleware` (a protocol, so this module
    and the edge do not import each other)."""

    app: Any
    gate: Any
    keys: bool
    websockets: bool

    def render_error(self, path: str, error: ProxyError) -> bytes: ...
    def _refusal(self, scope, headers: dict[bytes, bytes]) -> ProxyError | None: ...
    def _identify(self, scope, headers: dict[bytes, bytes], required: bool = False) -> Any: ...
    def missing_key_message(self, path: str) -> str: ...

log = get_logger("subrelay.edge")


class WebSocketsOff(ProxyError):
    status_code = 426
    error_type = "invalid_request_error"
    default_code = "websockets_disabled"


async def websocket_edge(edge: Edge, scope, receive, send, headers: dict[bytes, bytes],
                         public_paths: frozenset[str]) -> None:
    """Check one upgrade like an HTTP request, then hand the socket to the app."""
    scope.setdefault("method", "GET")  # an upgrade is a GET; the HTTP checks read the method
    record = RequestRecord.start(scope, headers.get(b"x-request-id"))
    refusal = await _refusal(edge, scope, headers, public_paths)
    if refusal is not None:
        await refuse(send, scope, edge.render_error(scope["path"], refusal), refusal, record)
        record.finish()
        return
    caller = scope.get("subrelay.caller")
    person = caller.scope_id if caller is not None and caller.kind == "user" else None
    if person is not None:  # a person's fair share of open sockets
        try:
            edge.gate.caps.take(person, "socket")
        except ProxyError as error:
            await refuse(send, scope, edge.render_error(scope["path"], error), error, record)
            record.finish()
            return
    accepted = False

    async def guarded_send(message) -> None:
        nonlocal accepted
        if message["type"] == "websocket.accept":
            accepted = True
        await send(message)

    try:
        await edge.app(scope, receive, guarded_send)
    except Exception:  # the last boundary: never an exception to the server
        log.exception("unexpected error on the WebSocket %s", scope["path"])
        try:
            if accepted:
                await send({"type": "websocket.close", "code": 1011, "reason": "internal error"})
            else:
                error = InternalError("Internal proxy error; see the subrelay log.")
                await refuse(send, scope, edge.render_error(scope["path"], error), error, record)
                record.finish()
        except Exception:  # the socket may be gone already
            pass
    finally:
        if person is not None:
            edge.gate.caps.give_back(person, "socket")


async def _refusal(edge: Edge, scope, headers: dict[bytes, bytes], public_paths: frozenset[str]) -> ProxyError | None:
    if not edge.websockets:
        return WebSocketsOff("WebSockets are turned off on this subrelay proxy (SUBRELAY_WEBSOCKETS=0); use HTTP: "
                             "POST /v1/responses.")
    refusal = edge._refusal(scope, headers)
    identity = getattr(edge, "identity", None)
    if refusal is None and identity is not None:  # the trusted header from anywhere but the proxy
        refusal = identity.forged_header(scope, headers)
    if refusal is not None:
        return refusal
    if scope["path"] in public_paths:
        return None
    needs_key = getattr(edge, "needs_key", None)  # owner keys and team users (team mode), where the edge has it
    if await needs_key(scope, headers) if needs_key is not None else edge.keys and edge._identify(scope, headers) is None:
        error = scope.get("subrelay.store_error") or AuthenticationFailed(
            edge.missing_key_message(scope["path"]))
        if isinstance(error, AuthenticationFailed):
            error.headers["WWW-Authenticate"] = "Bearer"
        return error
    return None  # a team user's socket: each response is admitted and settled on its own (doors/responses/websocket.py)


async def refuse(send, scope, body: bytes, error: ProxyError, record: RequestRecord | None = None) -> None:
    """Answer the upgrade with an HTTP error instead of a socket (``Connection: close``).

    Through the ASGI ``websocket.http.response`` extension where the server has it (uvicorn does);
    otherwise a close before accepting, which servers turn into a bare 403."""
    if record is not None:
        record.status = error.status_code
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if record is not None:
        headers.append((b"x-request-id", record.request_id.encode()))
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.http_headers().items()]
    await send({"type": "websocket.http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
