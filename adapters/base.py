"""The adapter interface: what every vendor module provides to the proxy.

Adapters are pure translators. Given a validated Chat Completions request and a credential they
describe the upstream request (:class:`UpstreamRequest`); given the upstream's SSE events they emit
:mod:`proxy.events`; given an upstream error response they return a :class:`proxy.errors.ProxyError`.
They never open sockets or files, so each one is tested with fixture transcripts alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from proxy.chat import ChatRequest
from proxy.credentials.base import Credential
from proxy.errors import ProxyError
from proxy.events import StreamTranslator


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP request to send upstream. ``body`` is serialised JSON; ``headers`` include auth."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    # Adapter-private facts the retry hook may need (e.g. which instruction mode was used).
    context: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """One entry of ``/v1/models``."""

    id: str
    owned_by: str


class Adapter(Protocol):
    """A vendor's wire format. ``name`` is the provider prefix in ``provider/model``."""

    name: str

    def build_request(self, chat: ChatRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        """Translate ``chat`` for the upstream (raises BadRequest for what it cannot express)."""

    def new_translator(self, chat: ChatRequest) -> StreamTranslator:
        """A fresh translator for one response to ``chat``."""

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
        """Map an upstream error response to our error hierarchy (never echo secrets)."""

    def retry_after_rejection(
        self, request: UpstreamRequest, status: int, body: bytes, chat: ChatRequest, upstream_model: str,
        credential: Credential,
    ) -> UpstreamRequest | None:
        """A different request worth one more try after this rejection, or None."""
