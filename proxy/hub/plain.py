"""A request for one of OpenAI's plain endpoints (embeddings, moderations, transcriptions, images).

These are not answers from a chat model, so they skip the neutral :class:`proxy.hub.model.ModelRequest`:
the client's validated body goes to an API-key upstream that has the same endpoint, with only the model
name changed. What they share with the model doors is the walk around the request: routing, team mode's
admission (its limits reserve :attr:`PlainRequest.token_estimate`), fallbacks, the ledger and usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.hub.model import Inbound
from proxy.hub.multipart import FormPart

# The endpoint's name (the request's ``inbound.format``, the ledger's door) → its path under ``/v1``.
ENDPOINTS = {
    "embeddings": "/embeddings",
    "moderations": "/moderations",
    "audio.transcriptions": "/audio/transcriptions",
    "images.generations": "/images/generations",
}


@dataclass(slots=True)
class PlainRequest:
    """A validated plain-endpoint request. ``inbound.body`` holds the JSON body (or a form's text fields,
    for reading); ``parts`` the form itself, for the multipart endpoint."""

    endpoint: str  # a key of ENDPOINTS
    model: str
    inbound: Inbound
    token_estimate: tuple[int, int]  # (input, output) tokens to reserve before the usage is known
    parts: list[FormPart] | None = None
    stream: bool = False
    # What the admission reads of any request (a plain endpoint has no effort and no output cap).
    reasoning_effort: None = None
    max_output_tokens: None = None

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint]

    @property
    def body(self) -> dict:
        return self.inbound.body

    @property
    def raw(self) -> bytes:
        return self.inbound.raw
