"""The model API's POST routes, dispatched by one dict lookup instead of Starlette's layers.

Every model request used to pass Starlette's error middleware, its exception middleware, the router's
regex match over ~30 routes and the route's exception wrapper before reaching its handler: about 45
Python calls, a tenth of what subrelay itself spends on a small request (benchmarks/README.md, issue 21).
For the paths here (exact paths, ``POST`` only: a Starlette ``Route`` with no parameters) this layer calls
the same handler with the same ``Request`` and turns its exceptions into responses with the app's own
exception handlers, looked up the way Starlette looks them up. Anything else (another method, another
path, a ``root_path``, websockets) goes to Starlette unchanged, so 404/405 and every other route behave
as before. An exception after the response has started goes to the edge, as it did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

# The paths worth the shortcut: every model call goes through one of them.
HOT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses",
                       "/v1/responses/compact", "/v1/messages", "/v1/messages/count_tokens",
                       "/backend-api/codex/responses", "/backend-api/codex/responses/compact"})

Handler = Callable[[Request, Exception], Awaitable[Any]]


class HotRoutes:
    def __init__(self, app, routes: Iterable[Any], exception_handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        self.endpoints: dict[str, Callable[[Request], Awaitable[Any]]] = {
            route.path: route.endpoint for route in routes
            if isinstance(route, Route) and route.path in HOT_PATHS and route.methods == {"POST"}
            and not route.param_convertors}
        self.exception_handlers = {key: handler for key, handler in exception_handlers.items()
                                   if isinstance(key, type)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await self._run(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _run(self, endpoint, scope, receive, send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            await response(scope, receive, send)
            return
        try:
            await response(scope, receive, send)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None or _started(send):
                raise  # the edge ends a started response (and answers an unhandled one)
            await (await handler(request, exc))(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None


def _started(send) -> bool:
    """Whether the response has started, as the edge's guarded ``send`` knows (True when unknown)."""
    return getattr(getattr(send, "__self__", None), "started", True)
