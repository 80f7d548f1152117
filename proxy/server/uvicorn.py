"""Running the app under uvicorn with bounds on what idle or slow clients can hold.

uvicorn bounds a keep-alive connection's idle time only *after* a first request, and never the time
a client takes to send a request head: a client could open thousands of sockets and send nothing,
or trickle a header a byte at a time, until file descriptors run out. The protocol below closes a
connection whose request head has not arrived within ``header_read_seconds``. Concurrent
connections and requests are capped (``limit_concurrency``: beyond it, 503), the file-descriptor
limit is raised to what the system allows, and SIGTERM stops the server within a grace period.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import signal
import socket
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.config.settings import Settings
from proxy.invocation import command


WRITE_BUFFER_HIGH = 16 * 1024
SEND_BUFFER = 128 * 1024  # the kernel doubles it; enough for a fast client, little for one that reads nothing


class HeadTimeoutProtocol(HttpToolsProtocol):
    """httptools' protocol, plus: the request head must arrive within ``head_timeout`` seconds
    of the connection opening (or of the previous response finishing)."""

    head_timeout: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that stops reading holds what is queued for it: the server's send waits once 16 KiB
        # wait (asyncio's default is 64 KiB), so a stalled stream holds little (and holds the upstream back).
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # and the kernel's send queue is bounded too (loopback autotunes it to 4 MiB)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError:
                pass
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_head_timer", None) is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_for(settings: Settings) -> type[HttpToolsProtocol]:
    return type("SubrelayHttpProtocol", (HeadTimeoutProtocol,), {"head_timeout": settings.limits.header_read_seconds})


def raise_file_limit() -> None:
    """Use the hard limit on open files: each client connection costs one descriptor."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        pass


def uvicorn_config(app, settings: Settings, **extra) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        loop="auto",
        http=extra.pop("http", None) or protocol_for(settings),
        server_header=False,
        limit_concurrency=settings.limits.max_connections,
        # A Responses WebSocket message over max_body_bytes gets an error frame from the door; far over
        # it, the protocol's own close (1009) before it is buffered whole.
        ws_max_size=settings.limits.max_body_bytes + 1024 * 1024,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.limits.shutdown_grace_seconds,
        log_config=None if settings.log_format == "json" else text_log_config(),
        **extra,
    )


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # subrelay's own lines, and uvicorn's


def text_log_config() -> dict:
    """uvicorn's logging setup with subrelay's line format: its start-up and WebSocket lines
    ("connection open", "[accepted]") looked like another program's ("INFO:     …") among subrelay's."""
    import copy

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for formatter in config["formatters"].values():
        formatter["fmt"] = TEXT_FORMAT
        formatter["use_colors"] = False
    return config


def configure_logging(settings: Settings) -> None:
    """Text lines by default; one JSON object per line with ``--log-format json`` (uvicorn's own loggers
    then propagate to the same handler). The redaction filter is installed on every handler."""
    import logging

    from proxy.observe.metrics import JsonFormatter

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=settings.log_level.upper(), format=TEXT_FORMAT)
    root.setLevel(settings.log_level.upper())
    if settings.log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is noise


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after its shutdown, so the process "dies" of it; a
    stop that was asked for and carried out is a success: exit 0 (what service managers expect)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


class PortInUse(Exception):
    """The port is taken; the message says by what (when it can tell) and how to pick another."""


def bind(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything says "listening" (uvicorn would print a raw
    ``[Errno 98]`` and exit 3 instead)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise PortInUse(f"cannot listen on {settings.host!r}: {exc.strerror} (check --host or SUBRELAY_HOST)") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(_port_taken(settings)) from None
        if exc.errno == errno.EACCES:
            raise PortInUse(f"not allowed to listen on port {settings.port} (ports below 1024 need privileges); "
                            f"pick another with --port or SUBRELAY_PORT") from None
        raise PortInUse(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    sock.set_inheritable(True)  # the workers of --workers N share it
    return sock


def _port_taken(settings: Settings) -> str:
    """What is on the port, when it answers subrelay's /healthz (one short, bounded probe)."""
    import httpx

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    holder = "another program"
    try:
        answer = httpx.get(f"http://{host}:{settings.port}/healthz", timeout=1.0)
        health = answer.json() if answer.status_code == 200 else None
        if isinstance(health, dict) and health.get("status") == "ok" and "version" in health:
            holder = f"another subrelay (version {health['version']}, process {health.get('worker', '?')})"
    except (httpx.HTTPError, ValueError):
        pass
    other = 8788 if settings.port != 8788 else 8789
    return (f"port {settings.port} on {settings.host} is already in use by {holder}. Stop it, or pick another "
            f"port: {command(f'serve --port {other}')} (or SUBRELAY_PORT={other}), and use that port in your "
            f"client's base URL.")


def run(app, settings: Settings, sock: socket.socket | None = None) -> None:
    raise_file_limit()
    GracefulServer(uvicorn_config(app, settings)).run(sockets=[sock] if sock is not None else None)


def run_workers(settings: Settings, sock: socket.socket | None = None) -> None:
    """Several worker processes on one port; each builds the app from the environment (proxy.server.asgi)."""
    raise_file_limit()
    config = uvicorn_config("proxy.server.asgi:app_factory", settings, factory=True, workers=settings.workers,
                            http=HeadTimeoutProtocol)
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[sock if sock is not None else config.bind_socket()]).run()
