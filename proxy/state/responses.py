"""A bounded local record of responses, so ``previous_response_id`` works with any upstream.

The Codex backend runs with ``store: false`` and cannot resolve an earlier response, and other
upstreams do not share ids with each other; so subrelay keeps, per response, the full input it was
given and the output items it returned, and expands ``previous_response_id`` into that history
before routing. Bounded by total bytes and by age (oldest dropped first); in memory for one
process, in a file the workers share with ``--workers N`` (:mod:`proxy.state.local.responses`).

The byte cap is the memory: each record is kept as the serialized JSON it was counted as (parsed
only when a next turn asks for it; parsed objects take ~10× their JSON), plus a fixed charge per
entry for the bookkeeping. Each record belongs to the caller that created it (the edge's
:data:`proxy.hub.caller.CALLER`: a client key, or a team user); another caller gets the same 400 as
for an unknown id, so ids neither leak conversations nor reveal that they exist.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.hub.caller import CALLER

# What one entry costs besides its JSON: the id string, this record, the OrderedDict node, the float.
ENTRY_OVERHEAD = 320


@dataclass(slots=True)
class StoredResponse:
    blob: bytes  # the conversation so far as JSON: input items, then this response's output
    owner: str  # the caller's scope id (proxy.hub.caller.Caller.scope_id)
    size: int
    stored_at: float


def current_owner() -> str:
    """Whom a record made (or asked for) now belongs to: the request's caller, set by the edge."""
    return sys.intern(CALLER.get().scope_id)


class ResponseStore:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_age_seconds: float = 6 * 3600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age_seconds
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0

    def put(self, response_id: str, input_items: list[Any], output_items: list[dict[str, Any]],
            owner: str | None = None) -> None:
        """Keep a finished response for ``owner`` (default: the current request's caller)."""
        # A copy of exactly its length: orjson's result keeps the capacity it grew to (~2.5× here).
        blob = memoryview(orjson.dumps([*input_items, *(replayable(item) for item in output_items)])).tobytes()
        size = len(blob) + len(response_id) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # a single conversation larger than the whole store is not kept
        self._drop(response_id)
        self._entries[response_id] = StoredResponse(blob, owner or current_owner(), size, self._clock())
        self._bytes += size
        self._evict()

    def history(self, response_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        """The items to put before a new turn that continues ``response_id``; a 400 if unknown, or
        if another caller made it (``owner`` default: the current request's caller)."""
        self._evict()
        entry = self._entries.get(response_id)
        if entry is None or entry.owner != (owner or current_owner()):
            raise not_found(response_id, self)
        return orjson.loads(entry.blob)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Nothing to release in memory (the shared store closes its file)."""

    def _drop(self, response_id: str) -> None:
        old = self._entries.pop(response_id, None)
        if old is not None:
            self._bytes -= old.size

    def _evict(self) -> None:
        oldest_allowed = self._clock() - self.max_age
        while self._entries:
            response_id, entry = next(iter(self._entries.items()))
            if self._bytes <= self.max_bytes and entry.stored_at >= oldest_allowed:
                break
            self._drop(response_id)


def not_found(response_id: str, store: ResponseStore) -> BadRequest:
    return BadRequest(
        f"Previous response with id '{response_id[:80]}' not found (subrelay keeps responses for "
        f"{store.max_age / 3600:g} h, up to {store.max_bytes // (1024 * 1024)} MiB; see SUBRELAY_RESPONSE_STORE_*).",
        param="previous_response_id", code="previous_response_not_found")


def replayable(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as it can be sent back as input with ``store: false``: no server-side ids
    (the backend would look them up and fail), no status."""
    cleaned = {key: value for key, value in item.items() if key not in ("id", "status")}
    if cleaned.get("type") == "message" and isinstance(cleaned.get("content"), list):
        cleaned["content"] = [{k: v for k, v in part.items() if k in ("type", "text", "refusal")}
                              for part in cleaned["content"] if isinstance(part, dict)]
    return cleaned
