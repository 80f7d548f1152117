"""All configuration, read once at start-up from the environment and command-line flags.

Nothing else reads ``os.environ``: the :class:`Settings` object is built here and passed down.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from proxy.config.file import FileConfig, load_config_file
from proxy.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_CODEX_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_AUTH_BASE_URL = "https://auth.openai.com"
DEFAULT_CODEX_TOKEN_URL = DEFAULT_AUTH_BASE_URL + "/oauth/token"
DEFAULT_LOGIN_PORT = 1455  # the redirect URI registered for the client is http://localhost:1455/auth/callback
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 300.0  # reasoning models can think for minutes between events
    write: float = 30.0
    pool: float = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the proxy hold (documented in the README)."""

    max_body_bytes: int = 32 * 1024 * 1024  # fits large image prompts
    body_read_seconds: float = 60.0  # the whole request body must arrive within this
    header_read_seconds: float = 15.0  # a new or idle connection must send a request head within this
    max_connections: int = 1000  # concurrent client connections and requests; beyond: 503
    request_seconds: float = 3600.0  # one request, first byte to last
    stall_seconds: float = 600.0  # an upstream stream without a meaningful event
    shutdown_grace_seconds: float = 10.0  # SIGTERM: how long open requests may finish
    response_store_bytes: int = 64 * 1024 * 1024  # the local record behind previous_response_id
    response_store_seconds: float = 6 * 3600.0
    websocket_idle_seconds: float = 600.0  # a Responses WebSocket with no message (between responses)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class CodexSockets:
    """Bounds on the sockets to the Codex backend (docs/codex-websocket.md)."""

    idle_seconds: float = 300.0  # an idle socket is closed after this
    per_login: int = 16  # sockets one caller's login may hold open (each conversation in use needs one)
    total: int = 512  # sockets in all


DEFAULT_CODEX_SOCKETS = CodexSockets()
MIN_CLIENT_KEY_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_keys: tuple[str, ...] = ()
    codex_base_url: str = DEFAULT_CODEX_BASE_URL
    codex_token_url: str = DEFAULT_CODEX_TOKEN_URL
    auth_base_url: str = DEFAULT_AUTH_BASE_URL  # where logins happen (authorize, device codes)
    login_port: int = DEFAULT_LOGIN_PORT
    admin_key: str | None = None  # guards the account API and page (always required beyond loopback)
    codex_auth_path: str = ""
    default_instructions: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    # Browser origins allowed to call the proxy (CORS); empty: browsers are refused.
    allowed_origins: tuple[str, ...] = ()
    # Extra Host header values accepted besides loopback names ("*": any).
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 512
    codex_catalog_seconds: float = 900.0  # how often the account's model catalogue is re-read
    upstream_transport: str = "aiohttp"  # or "httpx" (pure Python, slower; what respx tests patch)
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line
    workers: int = 1
    metrics_dir: str | None = None  # prometheus multiprocess directory (set when workers > 1)
    anthropic_base_url: str = DEFAULT_ANTHROPIC_BASE_URL
    websockets: bool = True  # the Responses API over WebSocket; off: upgrades get 426 (clients fall back to HTTP)
    # How requests reach the Codex backend: "auto" (its WebSocket, HTTP/SSE when that fails), "websocket", "http".
    codex_transport: str = "auto"
    codex_sockets: CodexSockets = field(default_factory=CodexSockets)
    file: FileConfig = field(default_factory=FileConfig)
    # The process environment as it was at start-up: API keys are looked up here, never later.
    env: Mapping[str, str] = field(default_factory=dict)

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def redis_url(env: Mapping[str, str]) -> str | None:
    """The configured Redis as one URL, or None when state lives on this host. ``SUBRELAY_REDIS_SENTINELS``
    (``host:port,…``) with ``SUBRELAY_REDIS_MASTER`` (default ``subrelay``) becomes ``redis+sentinel://…/<master>``
    (``rediss+sentinel`` with ``SUBRELAY_REDIS_TLS=1``); :mod:`proxy.state.redis.target` reads every shape."""
    url = (env.get("SUBRELAY_REDIS_URL") or "").strip()
    sentinels = (env.get("SUBRELAY_REDIS_SENTINELS") or "").strip()
    if not sentinels:
        return url or None
    master = (env.get("SUBRELAY_REDIS_MASTER") or "subrelay").strip()
    scheme = "rediss+sentinel" if (env.get("SUBRELAY_REDIS_TLS") or "").lower() in ("1", "true", "yes") \
        else "redis+sentinel"
    composed = f"{scheme}://{sentinels}/{master}"
    if url and url != composed:
        raise ConfigError("Set SUBRELAY_REDIS_URL or SUBRELAY_REDIS_SENTINELS, not both")
    return composed


def settings_from_env(env: Mapping[str, str] | None = None, config_path: str | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment) and the config file
    named by ``config_path`` or ``SUBRELAY_CONFIG`` (optional)."""
    env = dict(os.environ if env is None else env)
    if env.get("SUBRELAY_REDIS_SENTINELS"):
        env["SUBRELAY_REDIS_URL"] = redis_url(env) or ""  # every Redis user reads the one URL
    config_path = config_path or env.get("SUBRELAY_CONFIG")
    file = load_config_file(os.path.expanduser(config_path)) if config_path else FileConfig()
    return Settings(
        host=env.get("SUBRELAY_HOST", DEFAULT_HOST),
        port=_int(env, "SUBRELAY_PORT", DEFAULT_PORT),
        api_keys=tuple(k.strip() for k in env.get("SUBRELAY_API_KEYS", "").split(",") if k.strip()),
        codex_base_url=env.get("SUBRELAY_CODEX_BASE_URL", DEFAULT_CODEX_BASE_URL),
        codex_token_url=env.get("SUBRELAY_CODEX_TOKEN_URL")
        or env.get("SUBRELAY_AUTH_BASE_URL", DEFAULT_AUTH_BASE_URL).rstrip("/") + "/oauth/token",
        auth_base_url=env.get("SUBRELAY_AUTH_BASE_URL", DEFAULT_AUTH_BASE_URL).rstrip("/"),
        login_port=_int(env, "SUBRELAY_LOGIN_PORT", DEFAULT_LOGIN_PORT),
        admin_key=env.get("SUBRELAY_ADMIN_KEY") or None,
        codex_auth_path=codex_auth_path(env),
        default_instructions=_default_instructions(env) or file.default_instructions,
        timeouts=Timeouts(
            connect=_float(env, "SUBRELAY_CONNECT_TIMEOUT", 10.0),
            read=_float(env, "SUBRELAY_READ_TIMEOUT", 300.0),
            write=_float(env, "SUBRELAY_WRITE_TIMEOUT", 30.0),
            pool=_float(env, "SUBRELAY_POOL_TIMEOUT", 10.0),
        ),
        limits=Limits(
            max_body_bytes=_int(env, "SUBRELAY_MAX_BODY_BYTES", DEFAULT_LIMITS.max_body_bytes),
            body_read_seconds=_float(env, "SUBRELAY_BODY_TIMEOUT", DEFAULT_LIMITS.body_read_seconds),
            header_read_seconds=_float(env, "SUBRELAY_HEADER_TIMEOUT", DEFAULT_LIMITS.header_read_seconds),
            max_connections=_int(env, "SUBRELAY_MAX_CLIENT_CONNECTIONS", DEFAULT_LIMITS.max_connections),
            request_seconds=_float(env, "SUBRELAY_REQUEST_TIMEOUT", DEFAULT_LIMITS.request_seconds),
            stall_seconds=_float(env, "SUBRELAY_STALL_TIMEOUT", DEFAULT_LIMITS.stall_seconds),
            shutdown_grace_seconds=_float(env, "SUBRELAY_SHUTDOWN_GRACE", DEFAULT_LIMITS.shutdown_grace_seconds),
            response_store_bytes=_int(env, "SUBRELAY_RESPONSE_STORE_BYTES", DEFAULT_LIMITS.response_store_bytes),
            response_store_seconds=_float(env, "SUBRELAY_RESPONSE_STORE_SECONDS", DEFAULT_LIMITS.response_store_seconds),
            websocket_idle_seconds=_float(env, "SUBRELAY_WEBSOCKET_IDLE_TIMEOUT", DEFAULT_LIMITS.websocket_idle_seconds),
        ),
        allowed_origins=_list(env, "SUBRELAY_ALLOWED_ORIGINS"),
        allowed_hosts=_list(env, "SUBRELAY_ALLOWED_HOSTS"),
        max_connections=_int(env, "SUBRELAY_MAX_CONNECTIONS", 512),
        codex_catalog_seconds=_float(env, "SUBRELAY_CODEX_CATALOG_SECONDS", 900.0),
        upstream_transport=_choice(env, "SUBRELAY_UPSTREAM_TRANSPORT", ("aiohttp", "httpx"), "aiohttp"),
        log_level=env.get("SUBRELAY_LOG_LEVEL", "info").lower(),
        log_format=_choice(env, "SUBRELAY_LOG_FORMAT", ("text", "json"), "text"),
        workers=_int(env, "SUBRELAY_WORKERS", 1),
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        anthropic_base_url=env.get("SUBRELAY_ANTHROPIC_BASE_URL", DEFAULT_ANTHROPIC_BASE_URL),
        websockets=_switch(env, "SUBRELAY_WEBSOCKETS", True),
        codex_transport=_choice(env, "SUBRELAY_CODEX_TRANSPORT", ("auto", "websocket", "http"), "auto"),
        codex_sockets=CodexSockets(
            idle_seconds=_float(env, "SUBRELAY_CODEX_SOCKET_IDLE_TIMEOUT", DEFAULT_CODEX_SOCKETS.idle_seconds),
            per_login=_int(env, "SUBRELAY_CODEX_SOCKETS_PER_LOGIN", DEFAULT_CODEX_SOCKETS.per_login),
            total=_int(env, "SUBRELAY_CODEX_SOCKETS_TOTAL", DEFAULT_CODEX_SOCKETS.total),
        ),
        file=file,
        env=env,
    )


def codex_auth_path(env: Mapping[str, str]) -> str:
    """``CODEX_AUTH_PATH``, else ``$CODEX_HOME/auth.json``, else ``~/.codex/auth.json``."""
    if env.get("CODEX_AUTH_PATH"):
        return os.path.expanduser(env["CODEX_AUTH_PATH"])
    home = env.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    return os.path.join(os.path.expanduser(home), "auth.json")


def check_bind_is_safe(settings: Settings, *, team_mode: bool = False) -> None:
    """Refuse to listen beyond loopback unless client keys (long enough not to be guessed) guard the proxy:
    ``SUBRELAY_API_KEYS``, or team mode's members' keys (``team_mode``: a team store is configured; the edge
    then refuses every keyless request, even while the team has no user)."""
    if any(key.lower().startswith("bearer ") for key in settings.api_keys):
        raise ConfigError("SUBRELAY_API_KEYS has a key starting with 'Bearer '; list the keys alone "
                          "(clients send them as 'Authorization: Bearer <key>').")
    short = [key for key in settings.api_keys if len(key) < MIN_CLIENT_KEY_LENGTH]
    if short:
        raise ConfigError(
            f"SUBRELAY_API_KEYS has a key of {len(short[0])} characters; client keys must have at least "
            f"{MIN_CLIENT_KEY_LENGTH} (try: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    if settings.admin_key is not None and len(settings.admin_key) < MIN_CLIENT_KEY_LENGTH:
        raise ConfigError(f"SUBRELAY_ADMIN_KEY must have at least {MIN_CLIENT_KEY_LENGTH} characters.")
    if is_loopback(settings.host) or settings.api_keys or team_mode:
        return
    raise ConfigError(
        f"Refusing to listen on {settings.host}: that is reachable from other machines, and anyone who "
        "reaches it could use your logins. Set SUBRELAY_API_KEYS=<key>[,<key>…] so clients must send "
        "'Authorization: Bearer <key>', add team members (subrelay users add: each gets a key), or listen "
        "on 127.0.0.1."
    )


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _default_instructions(env: Mapping[str, str]) -> str | None:
    if env.get("SUBRELAY_DEFAULT_INSTRUCTIONS"):
        return env["SUBRELAY_DEFAULT_INSTRUCTIONS"]
    path = env.get("SUBRELAY_DEFAULT_INSTRUCTIONS_FILE")
    if not path:
        return None
    try:
        text = Path(path).expanduser().read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"SUBRELAY_DEFAULT_INSTRUCTIONS_FILE: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"SUBRELAY_DEFAULT_INSTRUCTIONS_FILE: {path} is empty")
    return text


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, on/off), got {value!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def chatgpt_base_url(settings: Settings) -> str:
    """The ChatGPT backend (``…/backend-api``) the Codex base URL lives under: usage is read there."""
    base = settings.codex_base_url.rstrip("/")
    return base[: -len("/codex")] if base.endswith("/codex") else base
