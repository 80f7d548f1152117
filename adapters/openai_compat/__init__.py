"""OpenAI-compatible API-key upstreams (OpenAI, OpenRouter, xAI, Groq, Perplexity, Gemini, custom).

This is the fast path: the upstream already speaks Chat Completions, so the request is forwarded
with only the model name (and, for Perplexity, the turn order) changed, and the answer — JSON or
SSE — is relayed byte for byte without decoding.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Mapping

import orjson

from proxy import __version__
from proxy.credentials.base import Credential
from proxy.errors import (
    AuthenticationFailed,
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

from proxy.hub.plain import PlainRequest

from ..base import ModelInfo, UpstreamRequest
from .endpoints import ALL_ENDPOINTS, plain_request
from .request import to_chat_body
from .response import ChatStreamTranslator

USER_AGENT = f"subrelay/{__version__}"


def presets() -> dict[str, dict[str, Any]]:
    data = json.loads(resources.files(__package__).joinpath("presets.json").read_text("utf-8"))
    return {name: spec for name, spec in data.items() if not name.startswith("_")}


class OpenAICompatAdapter:
    """Forwards Chat Completions to ``{base_url}/chat/completions`` with a bearer key."""

    passthrough_format = "chat"  # Chat clients' requests and answers go through unchanged
    accepts_traceparent = True  # OpenAI-compatible servers (vLLM, LiteLLM, Ollama…) join W3C traces

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        models: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
        merge_consecutive_roles: bool = False,
        key_origin: str = "its API key",
        endpoints: list[str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        # The plain endpoints this upstream has (a preset's list; every one for a custom server).
        self.endpoints = ALL_ENDPOINTS if endpoints is None else ALL_ENDPOINTS & frozenset(endpoints)
        self._models = list(models or ())
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        self._merge_roles = merge_consecutive_roles
        self._key_origin = key_origin

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(model, self.name) for model in self._models]

    def build_request(self, model_request: ModelRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        if model_request.inbound.format != "chat":
            if type(model_request) is PlainRequest:  # embeddings, moderations, transcriptions, images
                return plain_request(model_request, self.base_url, upstream_model, self._signed(credential))
            model_request.require_translatable(self.name)
            payload = to_chat_body(model_request, upstream_model)
            if self._merge_roles:
                payload["messages"] = merge_consecutive_roles(payload["messages"])
            body = orjson.dumps(payload)
        elif upstream_model == model_request.model and not self._merge_roles:
            body = model_request.raw  # unchanged: forward the client's bytes as they came
        else:
            payload = dict(model_request.body)
            payload["model"] = upstream_model
            if self._merge_roles:
                payload["messages"] = merge_consecutive_roles(payload["messages"])
            body = orjson.dumps(payload)
        headers = dict(self._headers)
        if credential.access_token:
            headers["Authorization"] = f"Bearer {credential.access_token}"
        if model_request.stream or model_request.inbound.format != "chat":
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest("POST", self.url, headers, body)

    def _signed(self, credential: Credential) -> dict[str, str]:
        """The adapter's headers with the key (for the plain endpoints; Chat builds its own inline)."""
        headers = dict(self._headers)
        if credential.access_token:
            headers["Authorization"] = f"Bearer {credential.access_token}"
        return headers

    def retry_after_rejection(self, *args: Any) -> UpstreamRequest | None:
        return None

    def new_translator(self, model_request: ModelRequest) -> ChatStreamTranslator:
        """Only for clients of other formats: Chat clients get the upstream's bytes."""
        return ChatStreamTranslator()

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
        message, code = _upstream_error(body)
        shown = f"{self.name}: {message}" if message else f"{self.name} answered HTTP {status}."
        if status == 401:
            return AuthenticationFailed(
                f"{self.name} rejected the API key from {self._key_origin} ({message or 'unauthorized'}). "
                "Check that the key is current and belongs to this provider.",
                code=code or "invalid_api_key",
            )
        if status == 403:
            return PermissionDenied(shown, code=code or "forbidden")
        if status == 404:
            return NotFound(shown, code=code or "model_not_found")
        if status == 429:
            return RateLimited(shown, retry_after=retry_after_seconds(headers), code=code or "rate_limit_exceeded")
        if status in (503, 529):
            return UpstreamOverloaded(shown, retry_after=retry_after_seconds(headers))
        if 400 <= status < 500:
            return UpstreamRejected(shown, status_code=status, code=code or "upstream_rejected")
        return UpstreamFailure(f"{self.name} failed with HTTP {status}{': ' + message if message else ''}.")


def merge_consecutive_roles(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge neighbouring user/user or assistant/assistant turns (Perplexity requires alternation)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and message["role"] == previous["role"]
            and message["role"] in ("user", "assistant", "system")
            and not previous.get("tool_calls")
            and not message.get("tool_calls")
        ):
            merged[-1] = {**previous, "content": _join_content(previous.get("content"), message.get("content"))}
        else:
            merged.append(message)
    return merged


def _join_content(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"
    parts = []
    for content in (first, second):
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(content)
    return parts


def _upstream_error(body: bytes) -> tuple[str, str | None]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return redact(body[:300].decode("utf-8", "replace").strip()), None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return redact(str(error.get("message") or "")), code if isinstance(code, str) else None
    if isinstance(error, str):
        return redact(error), None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return redact(payload["detail"]), None
    return "", None

