"""The app as uvicorn's worker processes build it (``subrelay serve --workers N``): each worker reads
the same settings from the environment that ``serve`` prepared, so every worker is configured alike."""

from __future__ import annotations

from .app import create_app
from .config import settings_from_env
from .redact import install_log_redaction
from .server import HeadTimeoutProtocol, configure_logging


def app_factory():
    settings = settings_from_env()
    configure_logging(settings)
    install_log_redaction()
    HeadTimeoutProtocol.head_timeout = settings.limits.header_read_seconds
    return create_app(settings)
