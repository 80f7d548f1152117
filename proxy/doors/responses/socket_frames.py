"""What a Responses WebSocket sends: the SSE stream's events as JSON text frames, and error frames.

An error frame has the HTTP status at the top level and the headers both at the top level (the Codex
CLI's ``WrappedWebsocketErrorEvent`` reads ``status`` and ``headers`` there and maps the frame like
an HTTP error of that status) and inside ``error`` (openai-python's ``ResponseWsError``):
``{"type":"error","status":429,"error":{"type","code","message","param","headers"},"headers":{…}}``.
Every string comes from :meth:`proxy.errors.ProxyError.to_dict`, the one redacting exit.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import ProxyError
from proxy.hub.sse import SSEEvent
from proxy.observe.redact import redact

# An ``error`` event inside an SSE stream carries no status; the frame needs one (Codex ignores an
# error frame without a status ≥ 400 and would wait for a terminal event that never comes).
_STATUS_BY_CODE = {"upstream_timeout": 504, "server_shutting_down": 503, "rate_limit_exceeded": 429,
                   "server_is_overloaded": 503, "overloaded": 503}


def error_frame(error: ProxyError, stream_id: str | None = None) -> str:
    detail = error.to_dict()["error"]
    headers = {name.lower(): redact(value) for name, value in error.headers.items()}
    payload: dict[str, Any] = {"type": "error", "status": error.status_code,
                               "error": {**detail, "headers": headers or None}, "headers": headers}
    if stream_id is not None:
        payload["stream_id"] = stream_id
    return orjson.dumps(payload).decode()


def event_frame(event: SSEEvent, stream_id: str | None) -> str | None:
    """One SSE event of the HTTP stream as the text frame that carries it (None: nothing to send)."""
    data = event.data
    if not data.startswith(b"{"):
        return None  # comments, keep-alives, [DONE]: the socket has its own pings
    if event.event != "error" and stream_id is None:
        return data.decode()
    payload = orjson.loads(data)
    if payload.get("type") == "error" and "status" not in payload:
        detail = payload.get("error") if isinstance(payload.get("error"), dict) else payload
        code = detail.get("code")
        payload["status"] = _STATUS_BY_CODE.get(code, 502) if isinstance(code, str) or code is None else 502
        payload["error"] = {"type": detail.get("type") or "server_error", "code": code,
                            "message": detail.get("message"), "param": detail.get("param")}
        payload.setdefault("headers", {})
    if stream_id is not None:
        payload["stream_id"] = stream_id
    return orjson.dumps(payload).decode()
