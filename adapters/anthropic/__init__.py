"""Claude models through the Anthropic Messages API, with an API key (never a Claude.ai login)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Mapping

import orjson

from proxy import __version__
from proxy.credentials.base import Credential
from proxy.errors import (
    AuthenticationFailed,
    BadRequest,
    NotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamFailure,
    UpstreamOverloaded,
    UpstreamRejected,
    retry_after_seconds,
)
from proxy.hub.model import ModelRequest
from proxy.observe.redact import redact

from ..base import ModelInfo, UpstreamRequest
from .request import DEFAULT_MAX_TOKENS, JSON_TOOL, to_messages_body
from .response import AnthropicStreamTranslator

ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = f"subrelay/{__version__}"


def catalog() -> list[dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("models.json").read_text("utf-8"))["models"]


class AnthropicAdapter:
    passthrough_format = "messages"  # Messages clients' requests and answers go through unchanged

    def __init__(self, name: str = "anthropic", base_url: str = "https://api.anthropic.com",
                 key_origin: str = "env ANTHROPIC_API_KEY") -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/v1/messages"
        self._key_origin = key_origin
        self._catalog = catalog()
        self._max_output = {entry["id"]: entry["max_output"] for entry in self._catalog}
        self.live_models: list[str] | None = None  # what the key's own model list says (proxy.upstream.catalog)

    def models(self) -> list[ModelInfo]:
        if self.live_models is not None:
            return [ModelInfo(model_id, self.name) for model_id in self.live_models]
        return [ModelInfo(entry["id"], self.name) for entry in self._catalog]

    def build_request(self, model_request: ModelRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        if model_request.inbound.format in ("messages", "messages.count_tokens"):
            return self._passthrough(model_request, upstream_model, credential)
        model_request.require_translatable("Claude")
        default_max = min(self._max_output.get(upstream_model, DEFAULT_MAX_TOKENS), DEFAULT_MAX_TOKENS)
        body = to_messages_body(model_request, upstream_model, default_max)
        headers = {
            "x-api-key": credential.access_token,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
            "user-agent": USER_AGENT,
        }
        return UpstreamRequest("POST", self.url, headers, orjson.dumps(body))

    def _passthrough(self, request: ModelRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        """The client's Messages body as sent (with the upstream's model name), signed with our key."""
        inbound = request.inbound
        body = inbound.raw if upstream_model == request.model else orjson.dumps({**inbound.body, "model": upstream_model})
        counting = inbound.format == "messages.count_tokens"
        headers = {
            "x-api-key": credential.access_token,
            "anthropic-version": inbound.headers.get("anthropic-version", ANTHROPIC_VERSION),
            "content-type": "application/json",
            "accept": "text/event-stream" if request.stream and not counting else "application/json",
            "user-agent": USER_AGENT,
        }
        if "anthropic-beta" in inbound.headers:
            headers["anthropic-beta"] = inbound.headers["anthropic-beta"]
        return UpstreamRequest("POST", self.url + ("/count_tokens" if counting else ""), headers, body)

    def retry_after_rejection(self, *args: Any) -> UpstreamRequest | None:
        return None

    def new_translator(self, model_request: ModelRequest) -> AnthropicStreamTranslator:
        json_mode = model_request.output_format is not None and model_request.output_format.kind != "text"
        return AnthropicStreamTranslator(JSON_TOOL if json_mode else None)

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
        kind, message = _error(body)
        shown = f"Anthropic: {message}" if message else f"Anthropic answered HTTP {status}."
        if status == 401:
            return AuthenticationFailed(f"Anthropic rejected the API key from {self._key_origin} "
                                        f"({message or 'authentication_error'}). Check the key at console.anthropic.com.")
        if status == 429:
            return RateLimited(shown, retry_after=retry_after_seconds(headers), code="rate_limit_exceeded")
        if status == 529 or kind == "overloaded_error":
            return UpstreamOverloaded(shown, retry_after=retry_after_seconds(headers))
        if status == 400:
            return BadRequest(shown, code=kind or "invalid_request_error")
        if status == 403:
            return PermissionDenied(shown, code=kind or "permission_error")
        if status == 404:
            return NotFound(shown, code="model_not_found" if "model" in message else kind)
        if 400 <= status < 500:
            return UpstreamRejected(shown, status_code=status, code=kind or "upstream_rejected")
        return UpstreamFailure(f"Anthropic failed with HTTP {status}{': ' + message if message else ''}.")


def _error(body: bytes) -> tuple[str | None, str]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, redact(body[:300].decode("utf-8", "replace").strip())
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return error.get("type"), redact(str(error.get("message") or ""))
    return None, ""

