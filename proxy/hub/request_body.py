"""The client's request body, kept on the request so an error line can still name the model.

A request refused before routing (a bad parameter, an unknown model, a provider without a login)
never reaches the point where the record learns its model; the doors read the body through
:func:`client_body`, and the error boundary calls :func:`note_requested_model`, which parses it
only then (the success path pays nothing: the record already has the routed model).
"""

from __future__ import annotations

from typing import Any

import orjson

_KEY = "subrelay.body"
_LONGEST_MODEL = 256


async def client_body(request: Any) -> bytes:
    """``await request.body()``, remembered in the ASGI scope for the error boundary."""
    raw = await request.body()
    request.scope[_KEY] = raw
    return raw


def note_requested_model(scope: dict) -> None:
    """Put the body's ``model`` on the request record when nothing routed it (only if the body parsed
    and the name is a short string; anything else leaves ``-``)."""
    record = scope.get("subrelay.record")
    raw = scope.get(_KEY)
    if record is None or not raw or record.model != "-":
        return
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str) and 0 < len(model) <= _LONGEST_MODEL and model.isprintable():
        record.model = model
