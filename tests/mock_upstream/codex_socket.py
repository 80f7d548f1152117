"""The mock Codex backend's Responses WebSocket (``GET {base}/responses`` + ``Upgrade: websocket``).

Modelled on what codex-rs expects of the real one (../shared/research/codex-websocket.md; openai/codex
``codex-api/src/endpoint/responses_websocket.rs`` @ 00033d92):
- the upgrade needs a valid bearer; a bad one is refused with HTTP 401 before the socket opens;
- each text frame is ``{"type": "response.create", …the Responses body}``; each answer event is one
  text frame with the same JSON as the SSE ``data:`` line; ``codex.rate_limits`` comes first;
- **per-connection state**: the connection remembers only its *last* response (its full input and
  output); ``previous_response_id`` is accepted only for that one, and then ``input`` holds just the new
  items (else ``error`` 400 ``previous_response_not_found``); one response at a time per connection;
- ``generate: false`` (prewarm) answers created + completed with no output, and is remembered;
- errors are ``{"type": "error", "status": N, "error": {…}, "headers": {…}}``; after
  ``ws_limit_after`` responses a connection answers ``websocket_connection_limit_reached``.
Steering (``MockState``): ``websocket`` (False: the upgrade gets 426, as a backend without it);
``ws_drop_next``: the next N responses die after ``response.created`` (the connection is cut);
``ws_drop_after_deltas``: cut mid-answer instead, after that many deltas; ``ws_limit_after``.
Every response.create is recorded in ``requests`` with ``transport: "ws"``, its ``connection`` number,
``bytes`` (the frame's size) and the body as sent; ``expanded`` holds the input the model saw.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson

from .codex_script import build_transcript

_CONNECTIONS = itertools.count(1)


async def serve_socket(server: Any, scope, receive, send, validate) -> None:
    """One WebSocket connection, from the upgrade to its close."""
    s = server.state
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    if (await receive())["type"] != "websocket.connect":
        return
    if not s.websocket or not scope["path"].endswith("/responses"):
        await _deny(send, 426 if s.websocket is False else 404, {"detail": "Upgrade Required"})
        return
    if headers.get("authorization", "").removeprefix("Bearer ") not in s.valid_access:
        await _deny(send, 401, {"error": {"type": "invalid_request_error", "code": "token_expired",
                                          "message": "Your authentication token has expired."}})
        return
    number = next(_CONNECTIONS)
    s.ws_upgrades.append({"connection": number, "headers": headers})
    await send({"type": "websocket.accept", "headers": [(b"x-codex-primary-used-percent", b"12")]})
    last: dict[str, Any] | None = None  # {"id", "context": full input + output} of the last response
    answered = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") or (message.get("bytes") or b"").decode()
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await _event(send, _error(400, "invalid_json", "Invalid JSON"))
            continue
        if frame.get("type") != "response.create":
            continue  # response.processed and the like: nothing to answer
        body = {k: v for k, v in frame.items() if k not in ("type",)}
        s.uploads.append({"transport": "ws", "bytes": len(raw), "connection": number,
                          "incremental": "previous_response_id" in body})
        entry = {"transport": "ws", "connection": number, "bytes": len(raw), "headers": headers, "body": dict(body)}
        if s.record:
            s.requests.append(entry)
        answered += 1
        if s.ws_limit_after is not None and answered > s.ws_limit_after:
            await _event(send, {"type": "error", "status": 400, "error": {
                "type": "invalid_request_error", "code": "websocket_connection_limit_reached",
                "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket "
                           "connection to continue."}})
            await send({"type": "websocket.close", "code": 1000})
            return
        if headers.get("authorization", "").removeprefix("Bearer ") not in s.valid_access:
            await _event(send, _error(401, "token_expired", "Your authentication token has expired."))
            continue
        previous = body.pop("previous_response_id", None)
        items = list(body.get("input") or [])
        if previous is not None:
            if last is None or previous != last["id"]:
                await _event(send, _error(400, "previous_response_not_found",
                                          f"Previous response with id '{previous}' not found."))
                last = None
                continue
            items = last["context"] + items
        expanded = {**body, "input": items}
        entry["expanded"] = items
        problem = validate(expanded)
        if problem:
            await _event(send, _error(400, "invalid_request_error", problem))
            last = None
            continue
        if s.script:
            canned = s.script.pop(0)
            error = (canned.get("body") or {}).get("error") or {}
            await _event(send, {"type": "error", "status": canned["status"], "error": error,
                                "headers": canned.get("headers") or {}})
            continue
        await _event(send, {"type": "codex.rate_limits", "plan_type": "plus", "rate_limits": {
            "primary": {"used_percent": 12, "window_minutes": 300, "reset_at": 1900000000}}})
        if frame.get("generate") is False:
            response_id = f"resp_ws{number}_{answered}"
            await _event(send, {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
            await _event(send, {"type": "response.completed", "response": {"id": response_id, "status": "completed",
                                                                           "output": [], "usage": None}})
            last = {"id": response_id, "context": items}
            continue
        outcome = await _answer(s, send, expanded, receive)
        if outcome is None:  # cut or gone
            return
        last = outcome


async def _answer(s: Any, send, expanded: dict[str, Any], receive) -> dict[str, Any] | None:
    transcript = build_transcript(expanded, delta_count=s.delta_count, delta_size=s.delta_size,
                                  empty_completed_output=s.empty_completed_output)
    drop = s.ws_drop_next > 0
    if drop:
        s.ws_drop_next -= 1
    deltas = 0
    output: list[Any] = []
    response_id = ""
    delay = transcript.delay or s.inter_delta_delay
    for kind, payload in transcript.events:
        if kind.endswith(".delta"):
            deltas += 1
            if delay:
                try:  # a client that closes mid-answer cancels it: notice that while waiting
                    message = await asyncio.wait_for(receive(), delay)
                except TimeoutError:
                    message = None
                if message is not None and message["type"] == "websocket.disconnect":
                    s.cancelled_streams += 1
                    return None
            if s.ws_drop_after_deltas is not None and deltas > s.ws_drop_after_deltas:
                s.ws_drop_after_deltas = None
                await send({"type": "websocket.close", "code": 1011})
                return None
        if kind == "response.created":
            response_id = payload["response"]["id"]
        if kind == "response.output_item.done":
            output.append(payload["item"])
        await _event(send, payload)
        if drop and kind == "response.created":
            await send({"type": "websocket.close", "code": 1011})
            return None
    if transcript.truncate:
        await send({"type": "websocket.close", "code": 1011})
        return None
    s.finished_streams += 1
    terminal = transcript.events[-1][0] if transcript.events else ""
    if terminal != "response.completed":
        return {"id": "", "context": []}
    return {"id": response_id, "context": expanded["input"] + output}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "status": status, "error": {"type": "invalid_request_error", "code": code,
                                                          "message": message}}


async def _event(send, payload: dict[str, Any]) -> None:
    await send({"type": "websocket.send", "text": orjson.dumps(payload).decode()})


async def _deny(send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send({"type": "websocket.http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "websocket.http.response.body", "body": body})
