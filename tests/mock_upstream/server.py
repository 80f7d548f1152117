"""A mock Codex backend and ChatGPT token endpoint: a real HTTP server for 127.0.0.1 only.

Run by hand: ``python -m tests.mock_upstream --port 8900`` (prints a ready auth.json path). It
validates requests as the fact sheet says the backend does (bearer token, ``stream``/``store``,
non-empty ``instructions``, refused sampling parameters, orphan tool outputs), rotates single-use
refresh tokens, and exposes control endpoints under ``/_mock`` for tests.

It is a bare ASGI app (no framework) so it is cheap enough to serve as the benchmark upstream too.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .asgi import answers_400_when_confused, lifespan, read_body, send_json

from .auth_server import AuthState, MockAuth
from .codex_script import build_transcript
from .codex_socket import serve_socket

CATALOG = {
    "gpt-5", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-max", "gpt-5.1-codex-mini", "gpt-5.2",
    "gpt-5.2-codex", "gpt-5.3-codex", "gpt-5.4", "gpt-5.4-mini", "gpt-5.5", "codex-mini",
    "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6-astra", "nova-1",
}
# What GET {base}/models?client_version= lists for the mock account (fact sheet responses.md §6).
LIVE_MODELS = [
    {"slug": "gpt-6-astra", "display_name": "GPT-6 Astra", "visibility": "list", "priority": 1},
    {"slug": "gpt-5.6-sol", "display_name": "GPT-5.6 Sol", "visibility": "list", "priority": 2},
    {"slug": "gpt-5.5", "display_name": "GPT-5.5", "visibility": "list", "priority": 3},
    {"slug": "gpt-5.4", "display_name": "GPT-5.4", "visibility": "list", "priority": 4},
    {"slug": "gpt-5.4-mini", "display_name": "GPT-5.4 mini", "visibility": "list", "priority": 5},
    {"slug": "nova-1", "display_name": "A slug no routing pattern knows", "visibility": "list", "priority": 6},
    {"slug": "gpt-5.1-codex", "display_name": "GPT-5.1 Codex (retired)", "visibility": "hide", "priority": 99},
]
for _entry in LIVE_MODELS[:-1]:  # like the backend's entries: the agent prompt Codex sends (the retired one has none)
    _entry["model_messages"] = {"instructions_template": f"You are Codex on {_entry['slug']} (mock backend prompt)."}
REFUSED_PARAMETERS = ("temperature", "top_p", "max_output_tokens", "max_tokens", "max_completion_tokens", "stop")
ACCOUNT_ID = "acc-0000-mock"


def make_jwt(claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(orjson.dumps({'alg': 'none', 'typ': 'JWT'}))}.{b64(orjson.dumps(claims))}.{b64(secrets.token_bytes(16))}"


@dataclass
class MockState:
    """Everything the mock remembers; tests read and steer it directly or through ``/_mock``."""

    valid_access: set[str] = field(default_factory=set)
    live_refresh: set[str] = field(default_factory=set)
    used_refresh: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_calls: int = 0
    script: list[dict[str, Any]] = field(default_factory=list)  # queued canned answers for /responses
    official_instructions: str | None = None  # when set, any other instructions → 400
    empty_completed_output: bool = True
    token_lifetime: int = 3600
    refresh_delay: float = 0.0
    record: bool = True
    delta_count: int | None = None
    delta_size: int = 8
    inter_delta_delay: float = 0.0
    head_delay: float = 0.0  # seconds before the response head (an upstream slow to answer at all)
    silence: float = 0.0  # seconds of silence before the first delta (long silent reasoning)
    tail_delay: float = 0.0  # seconds between the last delta and the terminal event (a slow finish)
    catalog_calls: int = 0
    account_models: dict[str, list[str]] = field(default_factory=dict)  # account id -> its plan's slugs only
    catalog_not_modified: int = 0
    catalog_down: bool = False
    cancelled_streams: int = 0
    # The plan's window headers every answer carries (the real backend sends them on every response).
    window_headers: dict[str, str] = field(default_factory=lambda: {"x-codex-primary-used-percent": "12"})
    finished_streams: int = 0
    # Per ChatGPT account (the chatgpt-account-id header): window headers over window_headers (a plan nearly
    # full), and accounts whose plan is used up (429 usage_limit_reached, as the backend answers). Demo mode.
    account_windows: dict[str, dict[str, str]] = field(default_factory=dict)
    limited_accounts: set[str] = field(default_factory=set)
    # The Responses WebSocket (codex_socket.py): off by default, like a backend without it (426).
    websocket: bool = False
    ws_upgrades: list[dict[str, Any]] = field(default_factory=list)
    ws_drop_next: int = 0
    ws_drop_after_deltas: int | None = None
    ws_limit_after: int | None = None
    uploads: list[dict[str, Any]] = field(default_factory=list)  # every model request's size (benchmarks)
    auth: AuthState = field(default_factory=AuthState)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def issue_tokens(self, *, expires_in: int | None = None, plan: str = "plus", email: str = "user@example.com",
                     account: str = ACCOUNT_ID) -> dict[str, str]:
        lifetime = self.token_lifetime if expires_in is None else expires_in
        n = next(self._ids)
        claims = {"exp": int(time.time()) + lifetime, "iat": int(time.time()), "n": n,
                  "https://api.openai.com/auth": {"chatgpt_account_id": account, "chatgpt_plan_type": plan}}
        access = make_jwt(claims)
        refresh = f"rt_mock_{n}_{secrets.token_hex(12)}"
        self.valid_access.add(access)
        self.live_refresh.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "id_token": make_jwt({**claims, "email": email})}

    def issue_access_token(self, *, email: str | None = "robot@example.com", account: str = "acc-pat-mock",
                           plan: str = "enterprise") -> str:
        """A Codex personal access token (``at-…``) the backend accepts and whoami knows; revoke it with
        ``valid_access.discard(token)``."""
        token = f"at-{secrets.token_urlsafe(24)}"
        self.valid_access.add(token)
        self.auth.access_tokens[token] = {"email": email, "chatgpt_user_id": f"user-{account}",
                                          "chatgpt_account_id": account, "chatgpt_plan_type": plan,
                                          "chatgpt_account_is_fedramp": False}
        return token

    def auth_file(self, **kwargs: Any) -> dict[str, Any]:
        tokens = self.issue_tokens(**kwargs)
        return {"OPENAI_API_KEY": None, "tokens": {**tokens, "account_id": ACCOUNT_ID},
                "last_refresh": "2026-11-20T10:00:00.000000Z", "auth_mode": "chatgpt"}


class MockCodexServer:
    """The ASGI app. ``state`` is public so in-process tests can steer it without HTTP."""

    def __init__(self, state: MockState | None = None) -> None:
        self.state = state or MockState()

    @answers_400_when_confused
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            await serve_socket(self, scope, receive, send, lambda body: _validate(body, headers, self.state))
            return
        body = await read_body(receive)
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        s = self.state
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        auth = MockAuth(s.auth, lambda email, plan: s.issue_tokens(email=email, plan=plan, account=f"acc-{email.split('@')[0]}-mock"))
        if auth.handles(path) and (path != "/oauth/token" or form):
            await auth(scope, body, headers, send, s.valid_access)
        elif path.endswith("/responses/compact") and scope["method"] == "POST":
            await self._compact(headers, body, send)
        elif path.endswith("/responses") and scope["method"] == "POST":
            await self._responses(headers, body, send, receive)
        elif path.endswith("/codex/models") and scope["method"] == "GET":
            await self._models(headers, scope, send)
        elif path == "/oauth/token" and scope["method"] == "POST":
            await self._token(body, send)
        elif path.startswith("/_mock/"):
            await self._control(path, body, send)
        else:
            await send_json(send, 404, {"detail": "Not Found"})

    async def _responses(self, headers: dict[str, str], raw: bytes, send, receive) -> None:
        s = self.state
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await send_json(send, 400, {"detail": "Invalid JSON"})
            return
        s.uploads.append({"transport": "http", "bytes": len(raw), "incremental": False})
        if s.record:
            s.requests.append({"headers": headers, "body": body})
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in s.valid_access:
            await send_json(send, 401, {"error": {"message": "Your authentication token has expired. Please try signing in again.",
                                              "type": "invalid_request_error", "code": "token_expired"}})
            return
        if s.head_delay:
            await asyncio.sleep(s.head_delay)
        account = headers.get("chatgpt-account-id", "")
        windows = {**s.window_headers, **s.account_windows[account]} if account in s.account_windows else s.window_headers
        if account in s.limited_accounts:
            await send_json(send, 429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                                  "plan_type": "plus", "resets_at": int(time.time()) + 3600}},
                            {**windows, "x-codex-primary-used-percent": "100.0"})
            return
        if s.script:
            canned = s.script.pop(0)
            await send_json(send, canned["status"], canned.get("body", {}), canned.get("headers"))
            return
        problem = _validate(body, headers, s)
        if problem:
            await send_json(send, 400, {"detail": problem})
            return
        transcript = build_transcript(body, delta_count=s.delta_count, delta_size=s.delta_size,
                                      empty_completed_output=s.empty_completed_output)
        frames = transcript.frames()
        delay = transcript.delay or s.inter_delta_delay
        truncate = transcript.truncate
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"),
            *((k.encode(), v.encode()) for k, v in windows.items())]})
        gone = asyncio.Event()

        async def watch() -> None:  # uvicorn drops writes after a disconnect silently: listen for it
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            quiet = s.silence
            for frame, is_delta in frames:
                if quiet and is_delta:
                    await asyncio.sleep(quiet)
                    quiet = 0.0
                if delay and is_delta:
                    await asyncio.sleep(delay)
                if s.tail_delay and not is_delta and b"response.completed" in frame:
                    await asyncio.sleep(s.tail_delay)
                if gone.is_set():
                    s.cancelled_streams += 1
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if not truncate:
                s.finished_streams += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    async def _compact(self, headers: dict[str, str], raw: bytes, send) -> None:
        """Remote compaction: the conversation folded into one summary item."""
        body = orjson.loads(raw)
        self.state.requests.append({"headers": headers, "body": body, "path": "compact"})
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.state.valid_access:
            await send_json(send, 401, {"detail": "Unauthorized"})
            return
        await send_json(send, 200, {"output": [{"type": "compaction", "encrypted_content": "gAAAA-compacted",
                                                "items": len(body.get("input") or [])}]})

    async def _models(self, headers: dict[str, str], scope, send) -> None:
        s = self.state
        s.catalog_calls += 1
        if headers.get("authorization", "").removeprefix("Bearer ") not in s.valid_access:
            await send_json(send, 401, {"detail": "Unauthorized"})
            return
        if s.catalog_down or b"client_version=" not in scope.get("query_string", b""):
            await send_json(send, 503 if s.catalog_down else 400, {"detail": "unavailable"})
            return
        models = LIVE_MODELS
        only = s.account_models.get(headers.get("chatgpt-account-id", ""))
        if only is not None:  # another plan: fewer models
            models = [entry for entry in LIVE_MODELS if entry["slug"] in only]
        etag = '"catalog-v1"' if only is None else f'"catalog-{len(models)}"'
        if headers.get("if-none-match") == etag:
            s.catalog_not_modified += 1
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send_json(send, 200, {"models": models}, {"etag": etag})

    async def _token(self, raw: bytes, send) -> None:
        s = self.state
        s.refresh_calls += 1
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await send_json(send, 400, {"error": "invalid_request"})
            return
        if s.refresh_delay:
            await asyncio.sleep(s.refresh_delay)
        token = body.get("refresh_token")
        if body.get("grant_type") != "refresh_token" or not body.get("client_id"):
            await send_json(send, 400, {"error": {"code": "invalid_request", "message": "bad grant"}})
            return
        if token in s.used_refresh:
            await send_json(send, 401, {"error": {"code": "refresh_token_reused", "message":
                        "Your refresh token has already been used to generate a new access token. Please try signing in again."}})
            return
        if token not in s.live_refresh:
            await send_json(send, 401, {"error": {"code": "refresh_token_invalidated", "message": "Unknown refresh token."}})
            return
        s.live_refresh.discard(token)
        s.used_refresh.add(token)
        tokens = s.issue_tokens()
        await send_json(send, 200, {**tokens, "expires_in": s.token_lifetime, "token_type": "Bearer"})

    async def _control(self, path: str, raw: bytes, send) -> None:
        s = self.state
        body = orjson.loads(raw) if raw else {}
        if path == "/_mock/requests":
            await send_json(send, 200, s.requests)
        elif path == "/_mock/script":
            s.script.extend(body if isinstance(body, list) else [body])
            await send_json(send, 200, {"queued": len(s.script)})
        elif path == "/_mock/auth-file":
            await send_json(send, 200, s.auth_file(expires_in=body.get("expires_in")))
        elif path == "/_mock/uploads":
            await send_json(send, 200, s.uploads)
            if body.get("clear"):
                s.uploads = []
        elif path == "/_mock/stats":
            await send_json(send, 200, {"refresh_calls": s.refresh_calls, "requests": len(s.requests),
                                    "cancelled_streams": s.cancelled_streams, "finished_streams": s.finished_streams})
        elif path == "/_mock/config":
            for name in ("delta_count", "delta_size", "inter_delta_delay", "record", "empty_completed_output",
                         "head_delay", "silence", "tail_delay", "websocket", "ws_drop_next",
                         "ws_drop_after_deltas", "ws_limit_after"):
                if name in body:
                    setattr(s, name, body[name])
            await send_json(send, 200, {"ok": True})
        else:
            await send_json(send, 404, {"detail": "unknown control"})


def _validate(body: dict[str, Any], headers: dict[str, str], s: MockState) -> str | None:
    if not headers.get("chatgpt-account-id"):
        return "Missing chatgpt-account-id header"
    personal = s.auth.access_tokens.get(headers.get("authorization", "").removeprefix("Bearer "))
    if personal is not None and headers["chatgpt-account-id"] != personal["chatgpt_account_id"]:
        return "The chatgpt-account-id header is not the access token's account"
    if body.get("stream") is not True:
        return "Stream must be set to true"
    if body.get("store") is not False:
        return "Store must be set to false"
    instructions = body.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        return "Instructions are required"
    if s.official_instructions is not None and instructions != s.official_instructions:
        return "Instructions are not valid"
    for name in REFUSED_PARAMETERS:
        if name in body:
            return f"Unsupported parameter: {name}"
    if body.get("model") not in CATALOG:
        return f"The '{body.get('model')}' model is not supported when using Codex with a ChatGPT account."
    calls = set()
    for item in body.get("input") or []:
        if item.get("type") == "function_call":
            calls.add(item.get("call_id"))
        elif item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            return f"No tool call found for function call output with call_id {item.get('call_id')}."
    return None

