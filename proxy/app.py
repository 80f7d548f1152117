"""The Starlette application: routes, client authentication, lifespan, and the one error boundary."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__
from .completions import create_chat_completion
from .config import Settings
from .errors import AuthenticationFailed, ProxyError
from .json_response import json_response
from .providers import build_router
from .redact import get_logger, redact, secrets
from .routing import Cooldowns, Router
from .transport import upstream_client
from .upstream import UpstreamClient

log = get_logger("subrelay.app")


@dataclass(slots=True)
class AppState:
    settings: Settings
    router: Router
    upstream: UpstreamClient
    cooldowns: Cooldowns


def create_app(settings: Settings, router: Router | None = None) -> Starlette:
    """Build the app. ``router`` may be injected (tests); by default it comes from the settings."""
    router = router or build_router(settings)
    secrets.add(*settings.api_keys)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with upstream_client(settings) as http:
            for provider in router.providers.values():
                # Sources that refresh over HTTP (the Codex login) share the pooled client.
                if hasattr(provider.credentials, "http") and provider.credentials.http is None:
                    provider.credentials.http = http
            app.state.subrelay = AppState(settings=settings, router=router, upstream=UpstreamClient(http),
                                          cooldowns=Cooldowns())
            yield

    routes = [
        Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ProxyError: proxy_error_response, HTTPException: http_error_response, Exception: unexpected_error_response},
    )
    if settings.api_keys:
        app.add_middleware(ClientKeyMiddleware, keys=settings.api_keys)
    return app


async def list_models(request: Request) -> Response:
    return json_response({"object": "list", "data": request.app.state.subrelay.router.models()})


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    router: Router = request.app.state.subrelay.router
    for entry in router.models():
        if entry["id"] == model_id:
            return json_response(entry)
    route = router.resolve(model_id)  # routable though not listed (e.g. codex/<new slug>); else 404
    return json_response({"id": model_id, "object": "model", "created": 0, "owned_by": route.provider.name})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "version": __version__})


# -- the error boundary ----------------------------------------------------------------------------


async def proxy_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    exc.message = redact(exc.message)
    return Response(exc.to_json(), status_code=exc.status_code, headers=exc.headers, media_type="application/json")


async def http_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ProxyError(
        f"{request.method} {request.url.path}: {exc.detail}", status_code=exc.status_code,
        code="not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None,
    )
    error.error_type = "invalid_request_error"
    return Response(error.to_json(), status_code=exc.status_code, headers=exc.headers, media_type="application/json")


async def unexpected_error_response(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error while handling %s %s", request.method, request.url.path)
    error = ProxyError(f"Internal proxy error ({type(exc).__name__}); see the subrelay log.", code="internal_error")
    return Response(error.to_json(), status_code=500, media_type="application/json")


# -- client authentication -------------------------------------------------------------------------


class ClientKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` (or ``x-api-key``) on every ``/v1/*`` request."""

    def __init__(self, app, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/chat/")):
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope["headers"])
        if presented is not None and any(hmac.compare_digest(presented, key) for key in self.keys):
            await self.app(scope, receive, send)
            return
        error = AuthenticationFailed(
            "Missing or invalid API key for this subrelay proxy. Send 'Authorization: Bearer <key>' with one "
            "of the keys in SUBRELAY_API_KEYS.",
        )
        response = Response(error.to_json(), status_code=401, media_type="application/json",
                            headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None
