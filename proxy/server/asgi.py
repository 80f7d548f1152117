"""The app as uvicorn's worker processes build it (``subrelay serve --workers N``): each worker reads
the same settings from the environment that ``serve`` prepared, so every worker is configured alike."""

from __future__ import annotations

from proxy.config.settings import settings_from_env
from proxy.observe.redact import install_log_redaction
from proxy.server.app import create_app
from proxy.server.uvicorn import HeadTimeoutProtocol, configure_logging


def app_factory():
    settings = settings_from_env()
    configure_logging(settings)
    install_log_redaction()
    HeadTimeoutProtocol.head_timeout = settings.limits.header_read_seconds
    return create_app(settings)
