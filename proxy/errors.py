"""The proxy's error hierarchy.

Every failure the proxy can report is one of these classes. They are raised anywhere (routing,
adapters, the credential layer, the upstream client) and turned into an OpenAI-style error response
in exactly one place, the app's exception handler, so clients always see
``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status.
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import orjson

from proxy.observe.redact import redact

# Longest wait the proxy believes from an upstream (a weekly window is the longest real one).
MAX_RETRY_AFTER = 7 * 24 * 3600.0


# 4xx statuses a later try may get past: a timeout, a conflict, a rate limit. Every other 4xx is final.
RETRY_MAY_CURE = frozenset({408, 409, 429})


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
        error_type: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type  # an upstream's own type clients act on (Codex: usage_limit_reached)
        # Fields an upstream put beside message/type that clients read (Codex: plan_type, resets_at).
        self.details = details or {}
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def http_headers(self) -> dict[str, str]:
        """The headers of the HTTP answer carrying this error. A refusal that no retry can cure says so
        (``x-should-retry: false``, which the OpenAI and Anthropic SDKs obey): Claude Code otherwise
        retried subrelay's 401 ten times over three minutes before saying the key was wrong."""
        if 400 <= self.status_code < 500 and self.status_code not in RETRY_MAY_CURE and \
                "x-should-retry" not in self.headers:
            return {**self.headers, "x-should-retry": "false"}
        return self.headers

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object, as sent in a response body or an SSE data line.

        This is the one place every error string leaves the proxy, so every string is redacted
        here: an upstream that echoes a credential in its ``code`` or ``type`` is masked too.
        """
        error: dict[str, Any] = {
            "message": redact(self.message),
            "type": redact(self.error_type),
            "param": None if self.param is None else redact(self.param),
            "code": None if self.code is None else redact(self.code),
        }
        for name, value in self.details.items():
            error.setdefault(name, redact(value) if isinstance(value, str) else value)
        return {"error": error}

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

    # Whether the limit is the model's alone (most API rate limits) or the whole credential's
    # (a ChatGPT plan's usage limit): routing cools down exactly what is limited.
    per_model: bool = True

    def __init__(self, message: str, *, retry_after: float | None = None, per_model: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = sane_wait(retry_after)
        if per_model is not None:
            self.per_model = per_model
        if self.retry_after is not None:
            self.headers.setdefault("Retry-After", str(int(self.retry_after + 0.999)))


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
    default_code = "server_is_overloaded"  # the code the Codex CLI reads as "overloaded, retry later"


class UpstreamTimeout(ProxyError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"


class ServiceUnavailable(ProxyError):
    """Something on this machine (not the upstream) stops the proxy from serving right now."""

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class RequestTimeout(ProxyError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(ProxyError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaType(ProxyError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class InternalError(ProxyError):
    """A bug in the proxy: still an error in the client's shape, on a connection that stays usable."""

    default_code = "internal_error"


def sane_wait(seconds: float | None) -> float | None:
    """A wait an upstream asked for, made safe: finite, not negative, at most :data:`MAX_RETRY_AFTER`."""
    if seconds is None or not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, float(seconds)), MAX_RETRY_AFTER)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """An upstream's ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), made sane."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            wait = sane_wait(float(value) * scale)
        except ValueError:
            wait = _http_date_wait(value, now) if scale == 1.0 else None
        if wait is not None:
            return wait
    return None


def _http_date_wait(value: str, now: float | None) -> float | None:
    import time

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return sane_wait(when - (time.time() if now is None else now))


class ConfigError(Exception):
    """Invalid configuration: the server refuses to start and prints this message."""
