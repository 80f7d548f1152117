"""The ``previous_response_id`` record of one Responses WebSocket, in front of the app's.

Over WebSocket the Codex CLI sends ``store: false`` and still chains each turn on the last one with
``previous_response_id`` (it sends only the new items). So a socket keeps its own ``store: false``
answers, the last few, for as long as it is open; answers ``store`` allows go to the app's record
(:mod:`proxy.state.responses`) as over HTTP, where any later request may continue them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from proxy.state.responses import ResponseStore, replayable

KEEP = 4  # store=false answers a socket remembers (Codex chains on the last one only)


class SocketStore:
    keeps_unstored = True  # the endpoint's recorder hands it store=false answers too

    def __init__(self, shared: ResponseStore) -> None:
        self.shared = shared
        self.share = True  # whether the current response may go to the app's record (its `store`)
        self._own: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def put(self, response_id: str, input_items: list[Any], output_items: list[dict[str, Any]],
            owner: str | None = None) -> None:
        if self.share:
            self.shared.put(response_id, input_items, output_items, owner)
            return
        self._own[response_id] = [*input_items, *(replayable(item) for item in output_items)]
        while len(self._own) > KEEP:
            self._own.popitem(last=False)

    def history(self, response_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        """The conversation before a turn continuing ``response_id``; the app's 400 if neither knows it
        (the socket's own answers are its caller's: one socket, one key)."""
        own = self._own.get(response_id)
        return list(own) if own is not None else self.shared.history(response_id, owner)
