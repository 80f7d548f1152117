"""The few ASGI chores every mock upstream shares: lifespan, reading the body, a JSON answer."""

from __future__ import annotations

from typing import Any

import orjson


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def send_json(send, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    raw = orjson.dumps(payload)
    extra = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *extra]})
    await send({"type": "http.response.body", "body": raw})


def answers_400_when_confused(call):
    """Wrap a mock's ``__call__``: a request it cannot make sense of gets a 400, as a real API
    validates and refuses it, instead of a crash that a proxy would have to report as 5xx."""

    async def wrapped(self, scope, receive, send) -> None:
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await call(self, scope, receive, tracking_send)
        except Exception as exc:
            if started or scope["type"] != "http":
                raise
            await send_json(send, 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                   "message": f"invalid request ({type(exc).__name__})"}})

    return wrapped
