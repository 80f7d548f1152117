"""``previous_response_id`` on the Responses door: the stored conversation put before a new turn.

The record itself (bounded, in memory or shared between workers) is :mod:`proxy.state.responses`.
"""

from __future__ import annotations

from typing import Any

from proxy.doors.responses.request import input_items
from proxy.errors import BadRequest
from proxy.state.responses import ResponseStore


def expand_previous(body: dict[str, Any], store: ResponseStore) -> dict[str, Any]:
    """``body`` with ``previous_response_id`` replaced by the stored conversation before its input."""
    previous = body.get("previous_response_id")
    if previous is None:
        return body
    if not isinstance(previous, str) or not previous:
        raise BadRequest("'previous_response_id' must be a non-empty string.", param="previous_response_id",
                         code="invalid_type")
    expanded = {key: value for key, value in body.items() if key != "previous_response_id"}
    expanded["input"] = store.history(previous) + input_items(body)
    return expanded
