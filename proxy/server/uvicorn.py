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
import resource
import signal
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.config.settings import Settings


class HeadTimeoutProtocol(HttpToolsProtocol):
    """httptools' protocol, plus: the request head must arrive within ``head_timeout`` seconds
    of the connection opening (or of the previous response finishing)."""

    head_timeout: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.limits.shutdown_grace_seconds,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        **extra,
    )


def configure_logging(settings: Settings) -> None:
    """Text lines by default; one JSON object per line with ``--log-format json`` (uvicorn's own loggers
    then propagate to the same handler). The redaction filter is installed on every handler."""
    import logging

    from proxy.observe.metrics import JsonFormatter

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def run(app, settings: Settings) -> None:
    raise_file_limit()
    GracefulServer(uvicorn_config(app, settings)).run()


def run_workers(settings: Settings) -> None:
    """Several worker processes on one port; each builds the app from the environment (proxy.server.asgi)."""
    raise_file_limit()
    config = uvicorn_config("proxy.server.asgi:app_factory", settings, factory=True, workers=settings.workers,
                            http=HeadTimeoutProtocol)
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[config.bind_socket()]).run()
