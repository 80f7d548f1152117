"""The Starlette application: routes, client authentication, lifespan, and the one error boundary."""

from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from adapters.anthropic import AnthropicAdapter
from adapters.codex import CodexAdapter
from adapters.codex.model_catalog import complete_catalog, listed_slugs
from proxy import __version__
from proxy.account import api as account_api
from proxy.account.api import AdminGuard
from proxy.account import keys_api
from proxy.account.pending import PendingLogins
from proxy.identity import routes as identity_routes
from proxy.identity.service import IdentityService
from proxy.config.settings import Settings
from proxy.credentials.codex import CodexCredentialSource
from proxy.doors.chat.endpoint import create_chat_completion
from proxy.doors.messages.endpoint import count_tokens, create_message
from proxy.doors.plain.endpoint import create_embedding, create_image, create_moderation, create_transcription
from proxy.doors.messages.stream import anthropic_error_body
from proxy.doors.responses.endpoint import compact_response, create_response
from proxy.doors.responses.websocket import responses_socket
from proxy.errors import BadRequest, InternalError, ProxyError
from proxy.hub.json_response import json_response
from proxy.hub.request_body import note_requested_model
from proxy.observe.redact import get_logger, install_server_log_redaction, secrets
from proxy.observe import cost
from proxy.observe.tracing import Tracing
from proxy.server.edge import EdgeMiddleware
from proxy.server.hot_routes import HotRoutes
from proxy.team import admin_api, admin_page, ledger_api
from proxy.state.cooldowns import Cooldowns
from proxy.state.local.files import check_state_dir
from proxy.state.responses import ResponseStore
from proxy.upstream.catalog import DEFAULT_CLIENT_VERSION, AnthropicCatalog, CodexCatalog, LiveCatalog
from proxy.upstream.client import UpstreamClient
from proxy.upstream.sockets import socket_pool
from proxy.upstream.providers import build_router
from proxy.upstream.routing import Router
from proxy.team.context import Team, ledger_options
from proxy.hub.caller import CALLER
from proxy.team.catalogs import MemberCatalogs
from proxy.team.gate import TeamGate
from proxy.team.key_check import check_secret_key
from proxy.upstream.dispatch import ADMISSION
from proxy.team.logins import CallerLogins, import_owner_login
from proxy.team.alerts import Alerts
from proxy.team.ladder import Step
from proxy.team.spend import Money
from proxy.upstream.transport import upstream_client

log = get_logger("subrelay.app")
CODEX_NATIVE = "/backend-api/codex"  # where the Codex backend serves responses, compaction and models


@dataclass(slots=True)
class AppState:
    settings: Settings
    router: Router
    upstream: UpstreamClient
    cooldowns: Cooldowns
    responses: ResponseStore
    catalogs: list[LiveCatalog]
    admin: AdminGuard
    pending_logins: PendingLogins
    gate: TeamGate | None = None
    member_catalogs: MemberCatalogs = field(default_factory=MemberCatalogs)  # team members' own model lists

    @property
    def team(self) -> Team | None:
        """Team mode's store and secret box, once a store exists (``subrelay users add``)."""
        return self.gate.open() if self.gate is not None else None

    def codex_source(self) -> CodexCredentialSource | None:
        """The running server's own Codex login source (its cache and refresh lock are shared)."""
        provider = next((p for p in self.router.providers.values() if isinstance(p.adapter, CodexAdapter)), None)
        if provider is None:
            return None
        return getattr(provider.credentials, "owner", provider.credentials)  # team mode wraps it (CallerLogins)


def _money(settings: Settings) -> Money:
    """Team mode's prices, budgets and alerts, from subrelay.toml (the shipped price table by default)."""
    file = settings.file
    return Money(prices=file.prices, budgets=file.budgets, soft_percent=file.soft_percent,
                 alerts=Alerts.from_config(file.webhooks, settings.env))


def create_app(settings: Settings, router: Router | None = None) -> Starlette:
    """Build the app. ``router`` may be injected (tests); by default it comes from the settings."""
    router = router or build_router(settings)
    _shared_file(settings, "")  # a state directory others could write stops start-up here, with the fix
    secrets.add(*settings.api_keys)
    ledger_options(settings.env)  # a malformed SUBRELAY_LEDGER* stops start-up here, with the fix
    tracing = Tracing.from_env(settings.env, __version__)  # None unless OTEL_* asks for traces
    _install_prices(settings)
    gate = TeamGate(settings.env, fallback_at_percent=settings.file.fallback_at_percent, workers=settings.workers,
                    money=_money(settings), ladder=tuple(Step(*step) for step in settings.file.ladder),
                    key_caps={p.name: p.max_concurrent for p in settings.file.providers if p.max_concurrent},
                    queue_seconds=settings.file.queue_seconds, seal=settings.file.identity.seal)
    _sign_with_callers_logins(router, gate, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_server_log_redaction()  # uvicorn has configured its loggers by now
        async with upstream_client(settings) as http:
            for provider in router.providers.values():
                # Sources that refresh over HTTP (the Codex login) share the pooled client.
                if hasattr(provider.credentials, "http") and provider.credentials.http is None:
                    provider.credentials.http = http
            catalogs = [kind(provider, http, refresh_seconds=settings.codex_catalog_seconds,
                             shared=_catalog_slot(settings, f"catalog-{provider.name}"))
                        for provider in router.providers.values()
                        for kind in (_CATALOGS.get(type(provider.adapter)),) if kind is not None]
            sockets = socket_pool(settings)  # the Codex backend's WebSocket (None: HTTP only)
            app.state.subrelay = AppState(settings=settings, router=router, upstream=UpstreamClient(http, sockets),
                                          cooldowns=_cooldowns(settings),
                                          responses=_response_store(settings),
                                          catalogs=catalogs, admin=AdminGuard(settings),
                                          pending_logins=PendingLogins(gate.shared_team), gate=gate)
            team = gate.open()
            if team is None:
                _say_where_the_team_is(settings.env)
            if team is not None:
                try:
                    mismatch = await check_secret_key(team.store, team.box)
                except Exception:  # noqa: BLE001 - a store not answering yet is /readyz's to report
                    mismatch = None
                if mismatch is not None:
                    log.error("%s; /readyz answers 503 until it is fixed", mismatch)
                if team.store.remote and "@" not in (settings.env.get("SUBRELAY_REDIS_URL") or "") and \
                        not settings.env.get("SUBRELAY_REDIS_PASSWORD"):
                    log.warning("SUBRELAY_REDIS_URL has no password: anyone who reaches that Redis can read and change "
                                "the team's state (use redis://:PASSWORD@host/ or rediss://)")
            gate.open_ledger()
            owner = app.state.subrelay.codex_source()
            if team is not None and owner is not None:
                await import_owner_login(team, owner)  # with Redis: the owner's login moves to the store
            for catalog in catalogs:
                catalog.start()
            try:
                yield
            finally:
                for catalog in catalogs:
                    await catalog.stop()
                if sockets is not None:
                    await sockets.close()
                app.state.subrelay.responses.close()
                if hasattr(app.state.subrelay.cooldowns, "close"):  # the Redis one holds a connection pool
                    await app.state.subrelay.cooldowns.close()
                await gate.close()  # the last usage figures and ledger entries reach their stores
                if gate.money is not None and gate.money.alerts is not None:
                    await gate.money.alerts.close()  # queued alerts get their bounded chance
                if tracing is not None:
                    await asyncio.to_thread(tracing.shutdown)  # the last spans reach the collector

    routes = [
        Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/chat/completions", create_chat_completion, methods=["POST"]),
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/responses/compact", compact_response, methods=["POST"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        # The plain OpenAI endpoints, for API-key providers that have them (docs/endpoints.md).
        Route("/v1/embeddings", create_embedding, methods=["POST"]),
        Route("/v1/moderations", create_moderation, methods=["POST"]),
        Route("/v1/audio/transcriptions", create_transcription, methods=["POST"]),
        Route("/v1/images/generations", create_image, methods=["POST"]),
        Route(f"{account_api.PREFIX}/status", account_api.status, methods=["GET"]),
        Route(f"{account_api.PREFIX}/device/start", account_api.device_start, methods=["POST"]),
        Route(f"{account_api.PREFIX}/device/poll", account_api.device_poll, methods=["POST"]),
        Route(f"{account_api.PREFIX}/logout", account_api.logout, methods=["POST"]),
        Route(f"{account_api.PREFIX}/access-token", account_api.access_token_login, methods=["POST"]),
        Route(f"{account_api.PREFIX}/models", account_api.models, methods=["GET"]),
        Route(f"{account_api.PREFIX}/usage", account_api.usage, methods=["GET"]),
        Route("/api/llm/providers", account_api.providers, methods=["GET"]),
        Route("/account", account_api.account_page, methods=["GET"]),
        Route("/backend-api/wham/usage", account_api.codex_cli_usage, methods=["GET"]),
        Route("/api/codex/usage", account_api.codex_cli_usage, methods=["GET"]),
        Route("/responses", create_response, methods=["POST"]),
        WebSocketRoute("/v1/responses", responses_socket),  # the same API over one socket
        WebSocketRoute("/responses", responses_socket),
        # The Codex backend's own paths, for the Codex CLI's built-in provider moved with
        # openai_base_url = ".../backend-api/codex" (docs/codex.md): the same doors, the same edge.
        Route(f"{CODEX_NATIVE}/responses", create_response, methods=["POST"]),
        Route(f"{CODEX_NATIVE}/responses/compact", compact_response, methods=["POST"]),
        WebSocketRoute(f"{CODEX_NATIVE}/responses", responses_socket),
        Route(f"{CODEX_NATIVE}/models", codex_native_models, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", root, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", account_api.metrics, methods=["GET"]),
        *admin_api.routes(),  # team mode: /api/admin/... behind SUBRELAY_ADMIN_KEY
        *ledger_api.routes(),  # the request ledger and the audit log (and a member's own requests)
        *admin_page.routes(),  # and the page at /admin
        *identity_routes.routes(),  # sign-in (OpenID Connect), the session, sign-out
        *keys_api.routes(),  # a member's own named keys
    ]
    app = SubrelayApp(
        settings,
        gate,
        tracing,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ProxyError: proxy_error_response, HTTPException: http_error_response,
                            Exception: unexpected_error_response},
    )
    identity = settings.file.identity
    app.state.identity = IdentityService(identity, gate, settings.env) if identity.sign_in else None
    return app


def _install_prices(settings: Settings) -> None:
    """The cost the log line and the ledger show: the price table's pure function, when subrelay has one
    (``proxy.money.prices``); without it every cost stays unknown, never guessed."""
    kinds = {provider.name: provider.kind for provider in settings.file.providers}
    table = settings.file.prices  # the shipped table with subrelay.toml's [prices] on top (what budgets use)

    def dollars(provider: str, model: str, usage) -> float | None:
        found = table.cost_of(provider, model, usage, kinds.get(provider, provider))
        return None if found is None else found.micros / 1_000_000

    cost.install(dollars)


def _sign_with_callers_logins(router: Router, gate: TeamGate, settings: Settings) -> None:
    """Team mode: the Codex provider signs each user's requests with that user's own login."""
    for provider in router.providers.values():
        if isinstance(provider.adapter, CodexAdapter) and isinstance(provider.credentials, CodexCredentialSource):
            hint = (f"Open http://{settings.host}:{settings.port}/account, enter your subrelay key and sign in "
                    "with ChatGPT (or ask an admin to run `subrelay login --user NAME`).")
            provider.credentials = CallerLogins(provider.credentials, gate, settings.codex_token_url, hint)


_CATALOGS = {CodexAdapter: CodexCatalog, AnthropicAdapter: AnthropicCatalog}  # vendors whose model list is live


def _shared_file(settings: Settings, name: str) -> str | None:
    """A file in the directory the workers share, or None for a single process (state in memory)."""
    state_dir = settings.env.get("SUBRELAY_STATE_DIR")
    if settings.workers > 1 and state_dir:
        check_state_dir(state_dir)  # ours, no link, closed to others: else a clear start-up error
        return os.path.join(state_dir, name)
    return None


def _catalog_slot(settings: Settings, name: str):
    """Where the workers or replicas agree on one live catalogue: Redis across hosts, a file in the state
    directory for the workers of one host, nowhere for one process."""
    if settings.env.get("SUBRELAY_REDIS_URL"):
        from proxy.state.redis.slot import RedisSlot

        return RedisSlot.from_url(settings.env["SUBRELAY_REDIS_URL"], settings.env, name)
    path = _shared_file(settings, name + ".json")
    if path is None:
        return None
    from proxy.state.local.files import FileSlot

    return FileSlot(path)


def _cooldowns(settings: Settings) -> Cooldowns:
    """In memory for one process; through a shared file when several workers serve one port; through
    Redis when replicas span hosts (``SUBRELAY_REDIS_URL``)."""
    if settings.env.get("SUBRELAY_REDIS_URL"):
        from proxy.state.redis.cooldowns import RedisCooldowns

        return RedisCooldowns.from_url(settings.env["SUBRELAY_REDIS_URL"], settings.env)
    path = _shared_file(settings, "cooldowns.json")
    if path is not None:
        from proxy.state.local.cooldowns import SharedCooldowns

        return SharedCooldowns(path)
    return Cooldowns()


def _response_store(settings: Settings) -> ResponseStore:
    """In memory for one process; one SQLite file for all workers, so a conversation's next turn
    may land on any of them."""
    limits = settings.limits
    if settings.env.get("SUBRELAY_REDIS_URL"):  # replicas on several hosts: one record in Redis
        from proxy.state.redis.responses import RedisResponseStore

        return RedisResponseStore(settings.env["SUBRELAY_REDIS_URL"], settings.env, limits.response_store_bytes,
                                  limits.response_store_seconds)
    path = _shared_file(settings, "responses.sqlite3")
    if path is not None:
        from proxy.state.local.files import refused
        from proxy.state.local.responses import SharedResponseStore

        try:
            return SharedResponseStore(path, limits.response_store_bytes, limits.response_store_seconds)
        except OSError as exc:  # a planted link or foreign file: this worker keeps its own record
            refused(path, exc)
    return ResponseStore(limits.response_store_bytes, limits.response_store_seconds)


class SubrelayApp(Starlette):
    """Starlette with :class:`proxy.server.edge.EdgeMiddleware` outside its own error middleware, so the
    edge checks run first and no exception ever reaches the server (which would drop the
    client's keep-alive connection)."""

    def __init__(self, settings: Settings, gate: TeamGate, tracing: Tracing | None = None, **kwargs) -> None:
        self.settings = settings
        self.gate = gate
        self.tracing = tracing
        super().__init__(**kwargs)

    def build_middleware_stack(self):
        inner = HotRoutes(super().build_middleware_stack(), self.routes, self.exception_handlers)
        return EdgeMiddleware(inner, self.settings, render_error=error_body, gate=self.gate, tracing=self.tracing,
                              identity=getattr(self.state, "identity", None))


def error_body(path: str, error: ProxyError) -> bytes:
    """An error in the shape of the API the request was for: Anthropic's for the Messages API,
    OpenAI's for everything else."""
    if path.startswith(("/v1/messages", "/messages")):
        return anthropic_error_body(error)
    return error.to_json()


async def list_models(request: Request) -> Response:
    state = request.app.state.subrelay
    client_version = request.query_params.get("client_version")
    if client_version is not None:
        return json_response(await codex_cli_models(state, client_version))
    entries = state.router.models()
    own = await state.member_catalogs.for_caller(state)
    if own is not None:  # a team member: the Codex models *their* plan has, not the owner's login's
        codex = next(p.name for p in state.router.providers.values() if hasattr(p.credentials, "user_login"))
        created = entries[0]["created"] if entries else 0
        entries = [e for e in entries if e["owned_by"] != codex] + [
            {"id": slug, "object": "model", "created": created, "owned_by": codex} for slug in listed_slugs(own) or ()]
    entries = _allowed(entries)
    if "anthropic-version" in request.headers:  # the Anthropic SDK or Claude Code: its list shape and paging
        return json_response(anthropic_model_page(entries, request.query_params))
    return json_response({"object": "list", "data": entries})


def _allowed(entries: list[dict]) -> list[dict]:
    """The models a team user may call (their ``--models`` patterns); everything for everyone else."""
    admission = ADMISSION.get()
    patterns = admission.user.models if admission is not None else ()
    if not patterns:
        return entries
    return [entry for entry in entries if any(fnmatch.fnmatchcase(entry["id"], pattern) for pattern in patterns)]


def anthropic_model_page(entries: list[dict], query) -> dict:
    """One page of Anthropic's ``GET /v1/models``: ``limit`` (1–1000, default 20) after ``after_id``
    or before ``before_id``, with ``has_more`` and the page's first and last ids."""
    ids = [entry["id"] for entry in entries]
    try:
        limit = min(max(int(query.get("limit", "20")), 1), 1000)
    except ValueError:
        raise BadRequest("'limit' must be an integer from 1 to 1000.", param="limit", code="invalid_value") from None
    before, after = query.get("before_id"), query.get("after_id")
    if before in ids:
        end = ids.index(before)
        start = max(end - limit, 0)
        more = start > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        end = start + limit
        more = end < len(ids)
    page = ids[start:end]
    return {"data": [anthropic_model(model_id) for model_id in page], "has_more": more,
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}


def anthropic_model(model_id: str) -> dict:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "1970-01-01T00:00:00Z"}


async def codex_cli_models(state: AppState, client_version: str) -> dict:
    """What the Codex CLI asks its provider for (``GET …/models?client_version=``, when its provider
    block names it with ``model_catalog_url``): the logged-in account's own catalogue from the
    backend. Without one, an empty list: subrelay has no prompt for an entry of its own, and Codex
    keeps its bundled list rather than run on no prompt. A team member gets their own plan's catalogue."""
    if CALLER.get().kind == "user":
        own = await state.member_catalogs.for_caller(state, client_version)
        return complete_catalog(own) if own is not None else {"models": []}
    for catalog in state.catalogs:
        if not isinstance(catalog, CodexCatalog):
            continue
        payload = await catalog.refresh(client_version[:32])
        if payload is not None:
            return complete_catalog(payload)
    return {"models": []}


async def codex_native_models(request: Request) -> Response:
    """``GET /backend-api/codex/models``: the Codex backend's catalogue shape (``{"models": [...]}``)
    always, since only Codex clients call this path; ``client_version`` as the CLI sends it."""
    client_version = request.query_params.get("client_version") or DEFAULT_CLIENT_VERSION
    return json_response(await codex_cli_models(request.app.state.subrelay, client_version))


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    router: Router = request.app.state.subrelay.router
    anthropic_client = "anthropic-version" in request.headers
    for entry in router.models():
        if entry["id"] == model_id:
            return json_response(anthropic_model(model_id) if anthropic_client else entry)
    route = router.resolve(model_id)  # routable though not listed (e.g. codex/<new slug>); else 404
    if anthropic_client:
        return json_response(anthropic_model(model_id))
    return json_response({"id": model_id, "object": "model", "created": router.listed_at, "owned_by": route.provider.name})


async def root(request: Request) -> Response:
    """``GET /``: someone opened the bare address; say where things are instead of a 404."""
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return json_response({
        "name": "subrelay", "version": __version__, "api": f"{origin}/v1", "account": f"{origin}/account",
        "message": f"subrelay is running. Point OpenAI clients at {origin}/v1 (Anthropic clients at {origin}); "
                   f"your logins and usage are at {origin}/account.",
    })


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "version": __version__, "worker": os.getpid()})


async def readyz(request: Request) -> Response:
    """Readiness, for load balancers and Kubernetes: 200 when the state store answers (or there is none),
    503 when it does not (``/healthz`` stays liveness: the process is up). On Redis the answer also says
    which Redis (``redis``: primary address, role, replicas and their lag) and is 503 when that node does not
    take writes (a demoted primary, or one cut off from its replicas): every admission would fail there."""
    state = request.app.state.subrelay
    team = getattr(state, "team", None)
    view = None
    for store in (getattr(team, "store", None), state.cooldowns):
        probe = getattr(store, "replication", None) or getattr(store, "ping", None)
        if probe is None:
            continue
        try:
            answer = await probe()
            ready = answer.get("writable", False) if isinstance(answer, dict) else bool(answer)
            view = answer if isinstance(answer, dict) else view
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; never a 500 here
            log.warning("not ready: the state store does not answer (%s)", type(exc).__name__)
            ready = False
        if not ready:
            body = {"status": "unavailable", "code": "state_store_unavailable"}
            return json_response({**body, "redis": view} if view else body, status_code=503)
    if team is not None:
        try:
            mismatch = await check_secret_key(team.store, team.box)
        except Exception as exc:  # noqa: BLE001 - the store failing here is a store that does not answer
            log.warning("not ready: the state store does not answer (%s)", type(exc).__name__)
            return json_response({"status": "unavailable", "code": "state_store_unavailable"}, status_code=503)
        if mismatch is not None:
            log.error("not ready: %s", mismatch)
            return json_response({"status": "unavailable", "code": "secret_key_mismatch", "message": mismatch},
                                 status_code=503)
    return json_response({"status": "ready", "redis": view} if view else {"status": "ready"})


# -- the error boundary ----------------------------------------------------------------------------


def _say_where_the_team_is(env) -> None:
    """SUBRELAY_STATE_DIR set after a team was made in ~/.subrelay turned team mode off without a word
    (every member's key then refused, requests served keyless): say which store is not being read."""
    import os

    from proxy.team.context import STORE_FILE, store_path

    if not env.get("SUBRELAY_STATE_DIR") or env.get("SUBRELAY_REDIS_URL"):
        return
    default = os.path.join(os.path.expanduser("~/.subrelay"), STORE_FILE)
    if os.path.exists(default) and os.path.abspath(default) != os.path.abspath(store_path(env)):
        log.warning("team mode is off: SUBRELAY_STATE_DIR points to %s, which has no team store, while %s holds "
                    "one; unset SUBRELAY_STATE_DIR (or point it there) to use that team", env["SUBRELAY_STATE_DIR"],
                    default)


async def proxy_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    note_requested_model(request.scope)  # the log line names the model a refused request asked for
    record = request.scope.get("subrelay.record")
    if record is not None:
        record.error = exc.code or exc.error_type
    return Response(error_body(request.url.path, exc), status_code=exc.status_code, headers=exc.http_headers(),
                    media_type="application/json")


async def http_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ProxyError(
        f"{request.method} {request.url.path}: {exc.detail}", status_code=exc.status_code,
        code="not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None,
    )
    error.error_type = "invalid_request_error"
    headers = {**error.http_headers(), **(exc.headers or {})}
    return Response(error_body(request.url.path, error), status_code=exc.status_code, headers=headers,
                    media_type="application/json")


async def unexpected_error_response(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error while handling %s %s", request.method, request.url.path)
    error = InternalError(f"Internal proxy error ({type(exc).__name__}); see the subrelay log.")
    return Response(error_body(request.url.path, error), status_code=500, media_type="application/json")
