"""The adapter interface: what every vendor module provides to the proxy.

Adapters are pure translators. Given the hub's :class:`proxy.hub.model.ModelRequest` (decoded from any
client format) and a credential they describe the upstream request (:class:`UpstreamRequest`); given the upstream's SSE events they emit
:mod:`proxy.hub.events`; given an upstream error response they return a :class:`proxy.errors.ProxyError`.
They never open sockets or files, so each one is tested with fixture transcripts alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from proxy.credentials.base import Credential
from proxy.errors import ProxyError
from proxy.hub.events import StreamTranslator
from proxy.hub.model import ModelRequest


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
    """A vendor's wire format. ``name`` is the provider prefix in ``provider/model``.

    ``passthrough_format`` names the client format this vendor speaks natively (``chat``,
    ``responses`` or ``messages``): requests in that format skip the hub and are relayed nearly
    unchanged.
    """

    name: str
    passthrough_format: str | None

    def build_request(self, model_request: ModelRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        """Translate ``model_request`` for the upstream (raises BadRequest for what it cannot express)."""

    def new_translator(self, model_request: ModelRequest) -> StreamTranslator:
        """A fresh translator for one response to ``model_request``."""

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
        """Map an upstream error response to our error hierarchy (never echo secrets)."""

    def retry_after_rejection(
        self, request: UpstreamRequest, status: int, body: bytes, model_request: ModelRequest, upstream_model: str,
        credential: Credential,
    ) -> UpstreamRequest | None:
        """A different request worth one more try after this rejection, or None."""
