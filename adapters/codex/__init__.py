"""ChatGPT Plus/Pro through the Codex Responses backend (``{base}/responses``)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Mapping

import orjson

from proxy import __version__
from proxy.credentials.base import Credential
from proxy.errors import ProxyError
from proxy.hub.model import ModelRequest

from ..base import ModelInfo, UpstreamRequest
from .effort import clamp_effort
from .errors import error_from_response, is_instructions_rejection
from .passthrough import fix_responses_body
from .request import (
    INSTRUCTIONS_CLIENT,
    INSTRUCTIONS_DEFAULT,
    header_safe_key,
    name_map,
    split_effort_suffix,
    to_responses_body,
)
from .response import CodexStreamTranslator

DEFAULT_BASE_URL = "https://chatgpt.com/backend-api/codex"
USER_AGENT = f"subrelay/{__version__} (+https://pypi.org/project/subrelay/)"


def shipped_default_instructions() -> str:
    return resources.files(__package__).joinpath("default_instructions.md").read_text("utf-8").strip()


@functools.cache
def shipped_efforts() -> dict[str, tuple[list[str], str]]:
    """slug → (efforts it takes, its default), from ``models.json``."""
    data = json.loads(resources.files(__package__).joinpath("models.json").read_text("utf-8"))
    return {slug: (list(levels), default) for slug, (levels, default) in data.get("efforts", {}).items()}


@functools.cache
def catalog() -> tuple[str, ...]:
    """The Codex model slugs offered on ChatGPT plans, kept as data in ``models.json`` (read once)."""
    data = json.loads(resources.files(__package__).joinpath("models.json").read_text("utf-8"))
    return tuple(data["models"])


def is_codex_model(model: str) -> bool:
    """Bare slugs that belong to the Codex catalogue by default: ``gpt-5*`` and ``*codex*``."""
    return model.startswith("gpt-5") or "codex" in model


class CodexAdapter:
    """Translates Chat Completions to the Codex backend and back; pure apart from a small memory of
    which models currently refuse custom instructions (so later requests go that way first)."""

    name = "codex"
    passthrough_format = "responses"  # Responses clients' requests go through with fix-ups only

    def __init__(self, base_url: str = DEFAULT_BASE_URL, default_instructions: str | None = None) -> None:
        self.url = base_url.rstrip("/") + "/responses"
        self.default_instructions = default_instructions or shipped_default_instructions()
        self._needs_default_instructions: set[str] = set()
        # The logged-in account's live catalogue (set by proxy.upstream.catalog); None: use the shipped list.
        self.live_models: list[str] | None = None
        self.live_routable: set[str] = set()
        self.live_efforts: dict[str, list[str]] = {}  # slug → the efforts its live entry lists

    def models(self) -> list[ModelInfo]:
        slugs = self.live_models if self.live_models is not None else catalog()
        return [ModelInfo(slug, self.name) for slug in slugs]

    def claims(self, model: str) -> bool:
        """Whether the account's live catalogue lists ``model`` (so it routes here by name)."""
        return model in self.live_routable or split_effort_suffix(model)[0] in self.live_routable

    def efforts(self, slug: str) -> list[str] | None:
        """The efforts ``slug`` takes: its live catalogue entry's, else the shipped list's, else None."""
        if slug in self.live_efforts:
            return self.live_efforts[slug]
        shipped = shipped_efforts().get(slug)
        return shipped[0] if shipped else None

    def build_request(self, model_request: ModelRequest, upstream_model: str, credential: Credential) -> UpstreamRequest:
        mode = INSTRUCTIONS_DEFAULT if upstream_model in self._needs_default_instructions else INSTRUCTIONS_CLIENT
        return self._request(model_request, upstream_model, credential, mode)

    def retry_after_rejection(
        self,
        request: UpstreamRequest,
        status: int,
        body: bytes,
        model_request: ModelRequest,
        upstream_model: str,
        credential: Credential,
    ) -> UpstreamRequest | None:
        """On ``400 Instructions are not valid``: retry once with the default instructions and the
        client's system text as a developer message, and remember the model needs that."""
        if request.context.get("instructions_mode") != INSTRUCTIONS_CLIENT or not request.context.get("had_system"):
            return None
        if not is_instructions_rejection(status, body):
            return None
        self._needs_default_instructions.add(upstream_model)
        return self._request(model_request, upstream_model, credential, INSTRUCTIONS_DEFAULT)

    def new_translator(self, model_request: ModelRequest) -> CodexStreamTranslator:
        return CodexStreamTranslator(name_map(model_request.tools))

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
        return error_from_response(status, headers, body)

    def _request(self, model_request: ModelRequest, upstream_model: str, credential: Credential, mode: str) -> UpstreamRequest:
        if model_request.inbound.format == "responses.compact":  # remote compaction: the body as sent, our model
            body = {**model_request.body, "model": split_effort_suffix(upstream_model)[0]}
            request = self._signed(self.url + "/compact", body, credential, mode, bool(model_request.system))
            request.headers["Accept"] = "application/json"
            return request
        if model_request.inbound.format == "responses":
            body = fix_responses_body(model_request.body, upstream_model, self.default_instructions, mode)
        else:
            model_request.require_translatable(self.name)
            body = to_responses_body(model_request, upstream_model, self.default_instructions, mode)
        reasoning = body.get("reasoning")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
            effort = clamp_effort(reasoning["effort"], self.efforts(body.get("model", "")))
            body["reasoning"] = {**reasoning, "effort": effort} if effort else {
                k: v for k, v in reasoning.items() if k != "effort"}
        return self._signed(self.url, body, credential, mode, bool(model_request.system))

    def _signed(self, url: str, body: dict, credential: Credential, mode: str, had_system: bool) -> UpstreamRequest:
        headers = {
            "Authorization": f"Bearer {credential.access_token}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "OpenAI-Beta": "responses=experimental",
            "originator": "subrelay",
            "User-Agent": USER_AGENT,
        }
        if isinstance(body.get("prompt_cache_key"), str):
            headers["session_id"] = header_safe_key(body["prompt_cache_key"])
        if credential.account_id:
            headers["chatgpt-account-id"] = credential.account_id
        return UpstreamRequest(
            method="POST",
            url=url,
            headers=headers,
            body=orjson.dumps(body),
            # The body itself, for the WebSocket transport (proxy.upstream.sockets), which sends it as a
            # response.create frame, or only its new items, instead of POSTing these bytes.
            context={"instructions_mode": mode, "had_system": had_system, "body": body,
                     "websocket": url == self.url},
        )
