"""Codex backend error responses → our error hierarchy (pure)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

from proxy.errors import (
    AuthenticationFailed,
    BadRequest,
    NotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamFailure,
    UpstreamOverloaded,
    UpstreamRejected,
    retry_after_seconds,
    sane_wait,
)
from proxy.observe.redact import redact

INSTRUCTIONS_REJECTED = "Instructions are not valid"
OVERLOAD_CODES = ("server_is_overloaded", "slow_down")  # what the Codex CLI reads as "overloaded"
MAX_LIMIT_HEADERS = 40


def upstream_message(body: bytes) -> tuple[str, dict[str, Any]]:
    """The human message in a Codex error body (``detail`` or ``error.message``), and the error object."""
    try:
        payload = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return redact(text), {}
    if not isinstance(payload, dict):
        return "", {}
    error = payload.get("error")
    if isinstance(error, dict):
        return redact(error.get("message") or error.get("type") or ""), error
    detail = payload.get("detail")
    if isinstance(detail, str):
        return redact(detail), {}
    if detail is not None:
        return redact(orjson.dumps(detail).decode()), {}
    return "", {}


def is_instructions_rejection(status: int, body: bytes) -> bool:
    return status == 400 and INSTRUCTIONS_REJECTED.encode() in body


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> ProxyError:
    message, error = upstream_message(body)
    code = error.get("code") or error.get("type")
    code = code if isinstance(code, str) else None
    if status == 401:
        return AuthenticationFailed(
            "The Codex backend rejected the ChatGPT login even after a refresh"
            f"{' (' + message + ')' if message else ''}. Run `codex login` again.",
            code=code or "invalid_login",
        )
    if status == 429:
        return _rate_limited(message, error, headers, now=time.time() if now is None else now)
    if status in (503, 529) or code in OVERLOAD_CODES:
        return UpstreamOverloaded(f"Codex backend is overloaded{': ' + message if message else ''}.",
                                  code=code if code in OVERLOAD_CODES else "server_is_overloaded",
                                  retry_after=retry_after_seconds(headers), headers=limit_headers(headers))
    if status == 400 and message == INSTRUCTIONS_REJECTED:
        return BadRequest(
            "The Codex backend accepts only its official instructions for this model right now. Set "
            "SUBRELAY_DEFAULT_INSTRUCTIONS_FILE to the instructions it accepts (subrelay then sends your "
            "system prompt as a developer message).",
            code="instructions_not_valid",
        )
    shown = f"Codex backend: {message}" if message else f"Codex backend answered HTTP {status}."
    if status == 403:
        return PermissionDenied(shown, code=code or "forbidden")
    if status == 404:
        return NotFound(shown, code=code or "not_found")
    if 400 <= status < 500:
        return UpstreamRejected(shown, status_code=status, code=code or "upstream_rejected")
    # 5xx: the backend failed; the client sees a gateway error, with the upstream's words.
    return UpstreamFailure(f"Codex backend failed with HTTP {status}{': ' + message if message else ''}.")


def limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The backend's ``x-codex-*`` headers (which window, how used, when it resets, the promo text),
    which the Codex CLI reads to word its usage-limit message. Bounded in number and size."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-codex-") and len(kept) < MAX_LIMIT_HEADERS and len(value) <= 512:
            kept[lower] = value
    return kept


def _rate_limited(message: str, error: dict[str, Any], headers: Mapping[str, str], *, now: float) -> RateLimited:
    kind = error.get("type") if isinstance(error.get("type"), str) else error.get("code")
    if kind == "usage_not_included":
        plan = error.get("plan_type")
        return RateLimited(f"Codex is not included in this ChatGPT plan{': ' + message if message else ''}.",
                           code="usage_not_included", error_type="usage_not_included", per_model=False,
                           headers={**limit_headers(headers), "x-should-retry": "false"},
                           details={"plan_type": plan} if isinstance(plan, str) else None)
    retry_after = sane_wait(_seconds(error.get("resets_in_seconds")))
    resets_at = _seconds(error.get("resets_at"))
    if retry_after is None and resets_at is not None:
        retry_after = sane_wait(resets_at - now)
    if retry_after is None:
        retry_after = retry_after_seconds(headers, now=now)
    if error.get("type") == "usage_limit_reached" or error.get("code") == "usage_limit_reached":
        plan = error.get("plan_type")
        plan_text = f"ChatGPT {plan.capitalize()} plan" if isinstance(plan, str) and plan else "ChatGPT plan"
        when = ""
        if retry_after is not None:
            reset_time = datetime.fromtimestamp(now + retry_after, tz=timezone.utc)
            when = f" It resets at {reset_time:%Y-%m-%d %H:%M} UTC (in {_duration(retry_after)})."
        # Codex words its message from these and ends the turn (any other 429 it retries):
        # type usage_limit_reached, plan_type, resets_at (unix seconds) and the x-codex-* headers.
        details: dict[str, Any] = {}
        if isinstance(plan, str) and plan:
            details["plan_type"] = plan
        if resets_at is not None:
            details["resets_at"] = int(resets_at)
        elif retry_after is not None:
            details["resets_at"] = int(now + retry_after)
        if retry_after is not None:
            details["resets_in_seconds"] = int(retry_after)
        return RateLimited(
            f"Your {plan_text} has reached its Codex usage limit.{when}",
            retry_after=retry_after,
            code="usage_limit_reached",
            error_type="usage_limit_reached",
            per_model=False,  # the plan's 5-hour/weekly window covers every model of the account
            headers={**limit_headers(headers), "x-should-retry": "false"},  # the OpenAI SDKs: do not retry
            details=details,
        )
    return RateLimited(
        f"Codex backend rate limit{': ' + message if message else ''}.",
        retry_after=retry_after,
        code=error.get("code") if isinstance(error.get("code"), str) else "rate_limit_exceeded",
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
