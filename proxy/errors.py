"""The proxy's error hierarchy.

Every failure the proxy can report is one of these classes. They are raised anywhere (routing,
adapters, the credential layer, the upstream client) and turned into an OpenAI-style error response
in exactly one place, the app's exception handler, so clients always see
``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson


class ProxyError(Exception):
    """Base class: an error with an HTTP status and an OpenAI error type/code."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object, as sent in a response body or an SSE data line."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class BadRequest(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(ProxyError):
    """Our client's key is wrong, or the upstream credential is missing, expired or revoked."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status_code = 403
    error_type = "permission_error"


class NotFound(ProxyError):
    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class _WaitHint(ProxyError):
    """An error after which the upstream says when to try again: ``retry_after`` seconds become
    our ``Retry-After`` header, and routing cools the target down for as long."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(max(0, int(retry_after + 0.999))))


class RateLimited(_WaitHint):
    """The upstream (or its quota) says wait."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamRejected(ProxyError):
    """The upstream refused the request (a 4xx other than auth/limits); its status is kept."""

    error_type = "invalid_request_error"
    default_code = "upstream_rejected"


class UpstreamFailure(ProxyError):
    """The upstream failed (5xx, broken connection, malformed stream)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "bad_gateway"


class UpstreamOverloaded(_WaitHint):
    status_code = 503
    error_type = "upstream_error"
    default_code = "overloaded"


class UpstreamTimeout(ProxyError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """An upstream's ``retry-after-ms`` or ``retry-after`` (seconds) header, if it has a number."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


class ConfigError(Exception):
    """Invalid configuration: the server refuses to start and prints this message."""
