"""The edge: everything checked about a request before any route sees it, in one ASGI layer.

It sits outside Starlette's own error middleware, so it also is the last error boundary:
- **Where from**: the ``Host`` must name this server (loopback names unless told otherwise), and a
  browser ``Origin`` must be on ``SUBRELAY_ALLOWED_ORIGINS`` (or be this server's own origin): a
  page the user visits can neither spend their plan nor read answers through DNS rebinding.
  CORS preflights are answered for allowed origins only.
- **Who**: the client key, when keys are configured (``/healthz`` excepted).
- **What**: ``POST`` bodies must be ``application/json`` (so no "simple" cross-site form post
  gets through) and at most ``max_body_bytes``, enforced while reading, within a read deadline. The one
  exception, ``/v1/audio/transcriptions`` (a file upload, :data:`FORM_PATHS`), takes ``multipart/form-data``
  only: a browser's cross-site form still carries its ``Origin`` or ``Sec-Fetch-Site`` and is refused above.
- **Going away**: when the client disconnects before the response has started, the handler (and
  with it the upstream call) is cancelled; streams cancel themselves (:mod:`proxy.hub.event_stream`).
- **Bugs**: an exception that escapes the app is still an error in the client's API shape, and it
  never reaches the server, so the keep-alive connection stays usable.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.settings import Settings, is_loopback
from proxy.errors import (
    AuthenticationFailed,
    BadRequest,
    InternalError,
    PayloadTooLarge,
    PermissionDenied,
    ProxyError,
    RequestTimeout,
    UnsupportedMediaType,
)
from proxy.observe.ledger import LEDGER_PATHS, PLAIN_PATHS
from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import escape_controls, get_logger
from proxy.server.guarded import GuardedExchange, cors_headers, too_large
from proxy.server.edge_websocket import websocket_edge
from proxy.team.gate import TeamGate
from proxy.upstream.dispatch import ADMISSION
from proxy.hub.caller import ADMIN_KEY, ANONYMOUS, CALLER, Caller, OwnerKeys, presented_key

log = get_logger("subrelay.edge")
if TYPE_CHECKING:
    from proxy.identity.service import IdentityService

# Paths any caller may reach without a client key (a load balancer's health probe).
# ... and the admin page's own files (they hold no data: the page asks for the admin key).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/admin", "/admin/admin.js", "/admin/ledger.js", "/admin/admin.css",
                          # ... and the sign-in steps (they prove who is calling) and "who am I"
                          "/auth/oidc/login", "/auth/oidc/callback", "/auth/session", "/auth/logout"})
# The account API and page and the metrics: with client keys set they need one (or the admin key),
# and the admin key where it is set (proxy.account.api.AdminGuard).
ADMIN_PREFIXES = ("/api/llm/", "/account", "/metrics", "/api/admin", "/admin")
# The model API: the only paths SUBRELAY_ALLOWED_ORIGINS opens to other web origins. Everything else
# (account, metrics, usage, health) answers same-origin browser requests only, whatever that list says.
MODEL_PREFIXES = ("/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses", "/v1/messages",
                  "/messages", "/v1/models", "/backend-api/codex/responses", "/backend-api/codex/models",
                  *PLAIN_PATHS)
# A Host header: a DNS name or IPv4 address, or an IPv6 literal in brackets, then an optional port.
_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([a-z0-9._-]+))(?::([0-9]{1,5}))?")
# Model requests that always pass the team admission (proxy.team.policy): their key check may be
# completed there, in the same store round trip as the limits.
ADMITTED_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/responses", "/responses",
                            "/v1/messages", "/backend-api/codex/responses", *PLAIN_PATHS})
# The one path whose body is a form (an audio file), not JSON.
FORM_PATHS = frozenset({"/v1/audio/transcriptions"})
# Paths not worth a log line each (probes and scrapes).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Reachability probes answered 200 without a key (Claude Code: HEAD {ANTHROPIC_BASE_URL}/api/hello).
PROBE_PATHS = frozenset({"/", "/api/hello"})
# A refused request's body is read (and dropped) before the connection is closed, up to this size and
# time (EdgeMiddleware._drain): the answer then reaches the client instead of a connection reset.
DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 2.0
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})

# Renders an error for the API the request is for: (path, error) -> JSON body.
ErrorRenderer = Callable[[str, ProxyError], bytes]


def missing_key_message(path: str, admin_key_set: bool = True) -> str:
    """Which key a refused request needs, for the surface it was for. On the admin surface a server with
    no admin key says so: "wrong key" and "no key configured" read the same before, on the admin page too."""
    if path.startswith(("/api/admin", "/admin")):
        if not admin_key_set:
            return ("This subrelay has no admin key configured: set SUBRELAY_ADMIN_KEY (16+ random characters) "
                    "where it runs, restart it, and send that key in 'x-admin-key' or 'Authorization: Bearer <key>'.")
        return ("This needs the admin key (SUBRELAY_ADMIN_KEY) in 'x-admin-key' or 'Authorization: Bearer <key>'.")
    return ("Missing or invalid API key for this subrelay proxy. Send 'Authorization: Bearer <key>' (or 'x-api-key') "
            "with your subrelay key: a team member's own key (subrelay users add), or one in SUBRELAY_API_KEYS. "
            "A disabled, rotated or removed key is refused.")


def openai_error_body(path: str, error: ProxyError) -> bytes:
    return error.to_json()


class EdgeMiddleware:
    missing_key_message = staticmethod(missing_key_message)

    def __init__(self, app, settings: Settings, render_error: ErrorRenderer = openai_error_body,
                 gate: TeamGate | None = None, tracing=None, identity: "IdentityService | None" = None) -> None:
        self.app = app
        self.tracing = tracing  # proxy.observe.tracing.Tracing when OTEL_* asks for traces; None: no cost
        self.identity = identity  # sign-in sessions and a trusted proxy header (proxy.identity), when configured
        self.render_error = render_error
        self.limits = settings.limits
        self.owners = OwnerKeys(settings.api_keys)
        self.keys = bool(self.owners)  # client keys are configured: every request but the public ones needs one
        # Listening beyond loopback with no client keys is allowed in team mode only (the members' keys guard
        # it): should the team have no user at all, every request still needs a key rather than none.
        self.keys_or_closed = self.keys or not is_loopback(settings.host)
        self.gate = gate or TeamGate({})  # team mode: users' keys (and, once users exist, keys required)
        self.admin_key = settings.admin_key.encode() if settings.admin_key else None
        self.websockets = settings.websockets  # off: every upgrade gets 426 (proxy.server.edge_websocket)
        self.allowed_origins = frozenset(origin.rstrip("/").lower() for origin in settings.allowed_origins)
        hosts = {host.lower() for host in settings.allowed_hosts}
        if not is_loopback(settings.host) and not hosts:
            hosts.add("*")  # listening beyond loopback (with client keys): any name may reach us
        elif not is_loopback(settings.host) and settings.host not in ("0.0.0.0", "::"):
            hosts.add(settings.host.lower())
        self.allowed_hosts = frozenset(hosts)
        self._host_verdicts: dict[bytes, str] = {}  # Host header → ok, foreign or malformed (a few values)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # the same checks before a socket opens
                await websocket_edge(self, scope, receive, send, _header_map(scope["headers"]), PUBLIC_PATHS)
                return
            await self.app(scope, receive, send)
            return
        headers = _header_map(scope["headers"])
        record = RequestRecord.start(scope, headers.get(b"x-request-id"))
        scope["subrelay.record"] = record
        if self.tracing is not None and scope["path"] in LEDGER_PATHS:
            self.tracing.start(record, headers)
        try:
            await self._checked(scope, receive, send, headers)
        finally:
            slot = scope.get("subrelay.slot")
            if slot is not None:
                self.gate.caps.give_back(slot, "request")
            caller = scope.get("subrelay.caller")
            if caller is not None:
                record.person = caller.person
            if scope["path"] not in QUIET_PATHS and scope["method"] != "OPTIONS":
                record.finish()
            if record.trace is not None:
                self.tracing.finish(record)
            ledger = self.gate.ledger
            if ledger is not None and scope["path"] in LEDGER_PATHS:
                ledger.add(record, headers.get(b"user-agent"))
            admission = scope.get("subrelay.admission")
            if admission is not None:  # team mode: settle the user's reservation, account the request
                await admission.settle(record)
            elif caller is not None and caller.kind == "owner" and self.gate.book is not None and \
                    scope["path"] in LEDGER_PATHS:  # team mode: the owner's own requests are usage too
                self.gate.book.add(caller.person, record)

    async def _checked(self, scope, receive, send, headers: dict[bytes, bytes]) -> None:
        path = scope["path"]
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await self._drain(scope, receive, headers)
            await self._send_error(send, path, refusal, close=True, record=scope["subrelay.record"])
            return
        origin = headers.get(b"origin")
        model_api = path.startswith(MODEL_PREFIXES)
        cors = origin if origin is not None and model_api and self._origin_listed(origin) else None
        if scope["method"] == "OPTIONS" and origin is not None:
            await self._preflight(send, origin, headers, model_api)
            return
        if scope["method"] == "HEAD" and path in PROBE_PATHS:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        signed_in = None
        if self.identity is not None:
            try:
                signed_in = await self.identity.identify(scope, headers, has_key=_has_key(headers))
            except ProxyError as error:
                await self._send_error(send, path, error, cors=cors, record=scope["subrelay.record"])
                return
            if signed_in is not None:
                scope["subrelay.caller"] = signed_in
                CALLER.set(signed_in)
        # With single sign-on the account page itself is open (it holds nothing; it offers the sign-in).
        open_page = path == "/account" and self.identity is not None and self.identity.oidc is not None
        if signed_in is None and path not in PUBLIC_PATHS and not open_page and await self.needs_key(scope, headers):
            error = scope.get("subrelay.store_error") or AuthenticationFailed(
                missing_key_message(path, self.admin_key is not None))
            # The account page in a browser: let it ask for the key (the password; any user name).
            if isinstance(error, AuthenticationFailed):
                error.headers["WWW-Authenticate"] = 'Basic realm="subrelay"' if path == "/account" else "Bearer"
                if path == "/account" and scope["method"] == "GET":
                    await _send_key_page(send, error, scope["subrelay.record"])
                    return
            await self._send_error(send, path, error, cors=cors, record=scope["subrelay.record"])
            return
        if scope["method"] == "POST":
            problem = self._body_problem(headers, path)
            if problem is not None:
                close = isinstance(problem, PayloadTooLarge)
                if close:
                    await self._drain(scope, receive, headers)
                await self._send_error(send, path, problem, close=close, cors=cors, record=scope["subrelay.record"])
                return
        await self._run(scope, receive, send, cors)

    # -- checks ------------------------------------------------------------------------------------

    def _refusal(self, scope, headers: dict[bytes, bytes]) -> ProxyError | None:
        host = headers.get(b"host")
        if host is not None:
            refusal = self._host_refusal(host)
            if refusal is not None:
                return refusal
        origin = headers.get(b"origin")
        model_api = scope["path"].startswith(MODEL_PREFIXES)
        if origin is not None and not self._origin_ok(origin, host, model_api):
            if not model_api:
                return PermissionDenied(
                    f"Requests from the web origin {origin.decode('latin-1')[:100]!r} are refused: the account "
                    "surface, usage and metrics answer only the page subrelay serves itself (SUBRELAY_ALLOWED_ORIGINS "
                    "opens the model API only).", code="origin_not_allowed")
            return PermissionDenied(
                f"Requests from the web origin {origin.decode('latin-1')[:100]!r} are refused: a web page could "
                "otherwise spend your plan. To allow a browser app, add its origin to SUBRELAY_ALLOWED_ORIGINS.",
                code="origin_not_allowed")
        site = headers.get(b"sec-fetch-site")
        # Another site's page (<img>, <form>, fetch without cors): never for the account surface, usage or
        # metrics (GETs included: each status load calls the vendor); for the model API, nothing but reads.
        if site in (b"cross-site", b"same-site") and (
                not model_api or (origin is None and scope["method"] not in ("GET", "HEAD"))) and \
                not _page_navigation(scope, headers):
            return PermissionDenied("Cross-site requests are refused.", code="origin_not_allowed")
        return None

    def _host_refusal(self, host: bytes) -> ProxyError | None:
        """Why this Host is refused (None: it is not); the verdict is judged once per distinct value."""
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            verdict = self._judge_host(host)
            if len(self._host_verdicts) < 256:
                self._host_verdicts[host] = verdict
        if verdict == "ok":
            return None
        shown = escape_controls(host.decode("latin-1"))[:100]
        if verdict == "malformed":
            return BadRequest(f"The Host header {shown!r} is not a host name with an optional port.",
                              code="invalid_host")
        return PermissionDenied(
            f"This subrelay proxy does not answer to the host name {shown!r}. Use "
            "127.0.0.1 or localhost, or add the name to SUBRELAY_ALLOWED_HOSTS.", code="host_not_allowed")

    def _judge_host(self, host: bytes) -> str:
        parsed = _HOST.fullmatch(host.decode("latin-1").lower())
        if parsed is None or int(parsed.group(3) or 0) > 65535:
            # A path, '#', '@' userinfo, '?', whitespace: not host[:port] at all, whatever names are allowed
            # (a URL built from it, "http://127.0.0.1/#@evil.example/v1", would point elsewhere).
            return "malformed"
        return "ok" if self._host_allowed(parsed.group(1) or parsed.group(2)) else "foreign"

    def _host_allowed(self, name: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        if name in _LOOPBACK_NAMES or name in self.allowed_hosts:
            return True
        return is_loopback(name)

    def _origin_listed(self, origin: bytes) -> bool:
        value = origin.decode("latin-1").rstrip("/").lower()
        return "*" in self.allowed_origins or value in self.allowed_origins

    def _origin_ok(self, origin: bytes, host: bytes | None, model_api: bool = True) -> bool:
        if model_api and self._origin_listed(origin):
            return True
        # A page this server serves itself (same origin): the Host was already checked.
        value = origin.decode("latin-1").lower()
        return host is not None and value in (f"http://{host.decode('latin-1').lower()}",
                                               f"https://{host.decode('latin-1').lower()}")

    async def needs_key(self, scope, headers: dict[bytes, bytes]) -> bool:
        """Whether this request must be refused for want of a valid key (owner keys set, or team mode
        on), having identified the caller otherwise. A store that does not answer is a 503."""
        try:
            found = await self.gate.identify(presented_key(headers) or _basic_password(headers.get(b"authorization")),
                                             may_defer=scope["method"] == "POST" and scope["path"] in ADMITTED_PATHS)
            if found is None:
                team_on = await self.gate.active()
                if not (self.keys_or_closed or team_on):
                    return False
                refused = self._identify(scope, headers, required=True) is None
                if refused and not (self.keys or team_on):
                    scope["subrelay.store_error"] = AuthenticationFailed(
                        "This subrelay listens beyond loopback and has no client key yet: add a team member "
                        "(subrelay users add) or set SUBRELAY_API_KEYS, and send that key.", code="no_client_keys")
                return refused
        except ProxyError as error:
            scope["subrelay.store_error"] = error
            return True
        caller, user = found
        scope["subrelay.caller"] = caller
        if scope["method"] == "POST" and scope["path"] in ADMITTED_PATHS:  # a person's fair share of requests
            slot = caller.scope_id
            try:
                if self.gate.queue_seconds:  # when_full = "queue": wait (bounded) for a slot
                    await self.gate.caps.acquire(slot, "request", user.max_concurrent, self.gate.queue_seconds)
                else:
                    self.gate.caps.take(slot, "request", user.max_concurrent)
            except ProxyError as error:
                scope["subrelay.store_error"] = error
                return True
            scope["subrelay.slot"] = slot
        CALLER.set(caller)
        admission = scope["subrelay.admission"] = self.gate.admission(user)
        ADMISSION.set(admission)
        return False

    def _identify(self, scope, headers: dict[bytes, bytes], required: bool = False) -> Caller | None:
        """The caller behind the presented key (None when a key is required and none matched).

        On the account surface and ``/metrics`` the admin key counts too (its own check is
        :class:`proxy.account.api.AdminGuard`), and so does HTTP Basic with the key as password (how a
        browser opening ``/account`` asks for it and then sends it with the page's own calls)."""
        caller = self.owners.identify(presented_key(headers)) if self.keys or required else ANONYMOUS
        if caller is None and scope["path"].startswith(ADMIN_PREFIXES):
            for candidate in (_basic_password(headers.get(b"authorization")), headers.get(b"x-admin-key")):
                caller = self.owners.identify(candidate)
                if caller is not None:
                    break
            if caller is None and self.admin_key is not None:
                candidates = (presented_key(headers), headers.get(b"x-admin-key"),
                              _basic_password(headers.get(b"authorization")))
                if any(c and hmac.compare_digest(c, self.admin_key) for c in candidates):
                    caller = ADMIN_KEY
        if caller is not None:
            scope["subrelay.caller"] = caller
            CALLER.set(caller)
        return caller

    def _body_problem(self, headers: dict[bytes, bytes], path: str = "") -> ProxyError | None:
        media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if path in FORM_PATHS:  # a file upload; its Origin and Sec-Fetch-Site were checked like any POST's
            if media != b"multipart/form-data":
                return UnsupportedMediaType(
                    "Send this request as a file upload with 'Content-Type: multipart/form-data' (got "
                    f"{media.decode('latin-1')[:80] or 'none'!r}).")
        elif media != b"application/json" and not media.endswith(b"+json"):
            return UnsupportedMediaType(
                "Send the request body as JSON with 'Content-Type: application/json' (got "
                f"{media.decode('latin-1')[:80] or 'none'!r}).")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size > self.limits.max_body_bytes:
                return too_large(self.limits.max_body_bytes)
        return None

    async def _drain(self, scope, receive, headers: dict[bytes, bytes]) -> None:
        """Read and drop a refused request's body before answering it with ``Connection: close``.

        Closing a socket that still holds unread request bytes makes the kernel send a reset, which can
        destroy the answer on its way out: the client then sees "connection reset" instead of the 403 or
        413. So a small body is read first (at most :data:`DRAIN_BYTES`, within :data:`DRAIN_SECONDS`);
        one declared larger than that is not read at all (the close may then still reset it)."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > DRAIN_BYTES or int(length) == 0):
            return
        read = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while read <= DRAIN_BYTES:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    read += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return
        except TimeoutError:
            return

    # -- running the app -----------------------------------------------------------------------------

    async def _run(self, scope, receive, send, cors: bytes | None) -> None:
        run = GuardedExchange(self, scope, receive, send, cors)
        try:
            await self.app(scope, run.receive, run.send)
        except asyncio.CancelledError:
            if not run.cancelled_by_us:
                raise
            asyncio.current_task().uncancel()
            if run.body_timed_out:
                await self._send_error(send, scope["path"], RequestTimeout(
                    f"The request body did not arrive within {self.limits.body_read_seconds:g} s."), close=True, cors=cors,
                    record=scope["subrelay.record"])
            else:
                log.info("client went away before the answer started; upstream work cancelled (%s)", scope["path"])
        except Exception as exc:  # the last boundary: the server must never see an exception
            if not run.started:
                error = exc if isinstance(exc, ProxyError) else InternalError(
                    f"Internal proxy error ({type(exc).__name__}); see the subrelay log.")
                if not isinstance(exc, ProxyError):
                    log.exception("unexpected error while handling %s %s", scope["method"], scope["path"])
                await self._send_error(send, scope["path"], error, cors=cors, record=scope["subrelay.record"])
            elif not run.finished:
                log.debug("error after the response started (%s): %s", scope["path"], type(exc).__name__)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            run.close()

    async def _preflight(self, send, origin: bytes, headers: dict[bytes, bytes], model_api: bool = True) -> None:
        if not model_api or not self._origin_listed(origin):
            await self._send_error(send, "", PermissionDenied(
                "This origin is not in SUBRELAY_ALLOWED_ORIGINS.", code="origin_not_allowed"))
            return
        requested = headers.get(b"access-control-request-headers", b"")
        response_headers = [
            *cors_headers(origin),
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", requested[:2048]),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": response_headers})
        await send({"type": "http.response.body", "body": b""})

    async def _send_error(self, send, path: str, error: ProxyError, *, close: bool = False,
                          cors: bytes | None = None, record: RequestRecord | None = None) -> None:
        body = self.render_error(path, error)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if record is not None:
            record.status = error.status_code
            record.error = error.code or error.error_type
            headers.append((b"x-request-id", record.request_id.encode()))
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.http_headers().items()]
        if close:
            headers.append((b"connection", b"close"))
        if cors is not None:
            headers += cors_headers(cors)
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# Pages a link on another site may open (a top-level GET navigation): they hold no data (each asks this
# server for it, same-origin), and the sign-in's own steps come back from the provider this way.
NAVIGABLE_PAGES = frozenset({"/admin", "/account", "/auth/oidc/login", "/auth/oidc/callback"})


def _page_navigation(scope, headers: dict[bytes, bytes]) -> bool:
    return (scope["method"] == "GET" and scope["path"] in NAVIGABLE_PAGES
            and headers.get(b"sec-fetch-mode") == b"navigate" and headers.get(b"sec-fetch-dest") == b"document")


def _has_key(headers: dict[bytes, bytes]) -> bool:
    """Whether the request carries a key of its own (then keys decide, not a session cookie)."""
    return b"authorization" in headers or b"x-api-key" in headers or b"x-admin-key" in headers


# What a browser shows for /account when its sign-in dialog is cancelled (or before it is filled in):
# how to fill it in, instead of the API's JSON error.
_KEY_PAGE = (b'<!doctype html><meta charset="utf-8"><title>subrelay: your key</title>'
             b'<style>body{font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}</style>'
             b'<h1>This account page needs your subrelay key</h1>'
             b'<p>The browser asks for a user name and a password: put <b>your subrelay key</b> (a team member\'s '
             b'<code>srk_&hellip;</code> key, an owner key, or the admin key) in the <b>password</b> field. '
             b'The user name is not used: type anything.</p><p><a href="/account">Try again</a></p>')


async def _send_key_page(send, error: ProxyError, record: RequestRecord) -> None:
    record.status, record.error = error.status_code, error.code or error.error_type
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(_KEY_PAGE)).encode()),
               (b"www-authenticate", b'Basic realm="subrelay"'), (b"x-request-id", record.request_id.encode())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": _KEY_PAGE})


def _basic_password(authorization: bytes | None) -> bytes | None:
    """The password of ``Authorization: Basic`` (the key; the user name is ignored), else None."""
    if not authorization or authorization[:6].lower() != b"basic ":
        return None
    try:
        return base64.b64decode(authorization[6:].strip(), validate=True).partition(b":")[2] or None
    except ValueError:
        return None


def _header_map(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        headers.setdefault(name, value)
    return headers
