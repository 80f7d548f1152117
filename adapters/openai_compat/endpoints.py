"""The plain OpenAI endpoints (embeddings, moderations, audio transcriptions, image generations) for an
OpenAI-compatible upstream (pure): the client's validated body, with the upstream's model name, to
``{base_url}/<endpoint>``."""

from __future__ import annotations

from dataclasses import replace

import orjson

from proxy.hub.multipart import boundary_of, encode_form
from proxy.hub.plain import ENDPOINTS, PlainRequest

from ..base import UpstreamRequest

ALL_ENDPOINTS = frozenset(ENDPOINTS)


def plain_request(request: PlainRequest, base_url: str, upstream_model: str, headers: dict[str, str]) -> UpstreamRequest:
    """``request`` for ``base_url`` (``headers``: the adapter's, with the key): bytes unchanged when the
    model name is; a form keeps its parts and boundary, only its ``model`` field renamed."""
    headers = dict(headers)
    headers["Accept"] = "application/json"
    unchanged = upstream_model == request.model and "model" in request.body
    if request.parts is not None and unchanged:
        body, headers["Content-Type"] = request.raw, request.inbound.headers["content-type"]
    elif request.parts is not None:
        parts = [replace(part, value=upstream_model.encode()) if part.name == "model" and part.filename is None
                 else part for part in request.parts]
        body, headers["Content-Type"] = encode_form(parts, boundary_of(request.inbound.headers["content-type"]))
    elif unchanged:
        body = request.raw
    else:
        body = orjson.dumps({**request.body, "model": upstream_model})
    return UpstreamRequest("POST", base_url + ENDPOINTS[request.endpoint], headers, body)
