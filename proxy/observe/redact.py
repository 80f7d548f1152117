"""One redaction helper, used for every log line and every error message.

Two layers: secrets the process knows (tokens read from credential files, configured API keys) are
registered and replaced verbatim; anything that merely *looks* like a credential (JWTs, ``sk-``
style keys, bearer headers) is masked by pattern, so a token we never registered (a refresh
response echoed in an upstream error, say) is still not printed.
"""

from __future__ import annotations

import logging
import re
import threading

_MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 8

# Each alternative starts at a word boundary, so "task-management" is not an "sk-" key.
_PATTERNS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWT
    r"|(?:sk|pk|rk)-[A-Za-z0-9_-]{12,}"  # OpenAI / Anthropic / OpenRouter style keys
    r"|(?:xai-|gsk_|pplx-|AIza)[A-Za-z0-9_-]{12,}"  # xAI, Groq, Perplexity, Google
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"  # an Authorization header value
    r"|rt_[A-Za-z0-9._-]{16,}"  # opaque refresh tokens
    r"|at-[A-Za-z0-9._-]{16,}"  # Codex personal access tokens
    r")"
)
# A lowercase identifier such as "refresh_token_reused" or "sk-learn-model" is a code, not a secret:
# real keys and tokens mix case or digits.
_IDENTIFIER = re.compile(r"[a-z_.-]+")
# Query parameters whose values are credentials whatever they look like (for the access log).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|password|auth)=)[^&\s]*")


# Control characters (a %0a in a path, a CR in a header echoed in an error) would forge log lines.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\n``, ``\\x1b``): one value, one line."""
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _mask_unless_identifier(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if _IDENTIFIER.fullmatch(text) else _MASK


class SecretRegistry:
    """The set of secret strings this process has seen, to be masked wherever they appear."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            changed = False
            for secret in secrets:
                if secret and len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
                    self._secrets.add(secret)
                    changed = True
            if changed:
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(_MASK, text)
        return _PATTERNS.sub(_mask_unless_identifier, text)


secrets = SecretRegistry()


def redact(text: object) -> str:
    """Return ``text`` as a string with every known or credential-looking secret masked."""
    return secrets.redact(str(text))


class RedactingFilter(logging.Filter):
    """A logging filter that renders the message and masks secrets in it (and in exceptions)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = escape_controls(redact(message))
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class AccessLogRedactingFilter(logging.Filter):
    """For uvicorn's access log, whose formatter needs ``record.args`` intact: redact each string
    argument in place (the request line with its query string among them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                escape_controls(redact(_SECRET_QUERY.sub(r"\1" + _MASK, arg))) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def install_server_log_redaction() -> None:
    """Redact uvicorn's own loggers (they do not propagate to the root logger's handlers)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactingFilter) for f in access.filters):
        access.addFilter(AccessLogRedactingFilter())
    install_log_redaction(logging.getLogger("uvicorn.error"))


def get_logger(name: str) -> logging.Logger:
    """A logger whose records are redacted where they are made, whatever handler receives them."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to the root logger's handlers and to ``logger`` itself."""
    target = logger or logging.getLogger()
    flt = RedactingFilter()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(flt)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)


# -- relayed upstream bytes: only error frames and bodies are rewritten ------------------------------

_ERROR_KEY = b'"error"'  # a JSON key or value; inside a JSON string it would be escaped (\"error\")
_DATA_LINE = re.compile(rb"(?m)^data: ?([^\r\n]*)")


def redact_strings(value: object) -> object:
    """``value`` (parsed JSON) with every string masked as :func:`redact` masks text."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(key): redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_strings(item) for item in value]
    return value


def _error_subtrees(value: object) -> object:
    if isinstance(value, dict):
        return {key: redact_strings(item) if key == "error" else _error_subtrees(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_error_subtrees(item) for item in value]
    return value


def redact_error_json(data: bytes) -> bytes:
    """An upstream's JSON error (a body or one SSE ``data:``) with echoed credentials masked, decoded
    first so ``\\u``-escaped ones are caught too. An ``error``-typed object is masked whole; any
    other only under its ``error`` keys (a ``response.failed``'s ``response.error``), so the content
    beside them is kept as sent. Unchanged input comes back as the same bytes."""
    import orjson  # here, so importing this module stays cheap for the CLI

    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace")
        cleaned = redact(text)
        return data if cleaned == text else cleaned.encode()
    if isinstance(payload, dict) and payload.get("type") == "error":
        cleaned_payload = redact_strings(payload)
    else:
        cleaned_payload = _error_subtrees(payload)
    return data if cleaned_payload == payload else orjson.dumps(cleaned_payload)


def redact_error_body(body: bytes) -> bytes:
    """A relayed non-streaming body: rewritten only when it carries an ``error`` (one substring scan)."""
    return redact_error_json(body) if _ERROR_KEY in body else body


# Opaque values a client hands back verbatim (a compaction's encrypted state): masking a pattern that
# happened to occur in them would corrupt the conversation, and they never carry our credentials.
_OPAQUE_KEYS = frozenset({"encrypted_content"})


def _all_strings(value: object) -> object:
    if isinstance(value, dict):
        return {redact(key): item if key in _OPAQUE_KEYS and isinstance(item, str) else _all_strings(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_all_strings(item) for item in value]
    return redact(value) if isinstance(value, str) else value


def redact_relayed_body(body: bytes, *, content: bool = True) -> bytes:
    """The one redaction of an upstream body relayed to a client (every ``read_whole``).

    ``content=True`` (an answer a person reads, byte-relayed): only its ``error`` parts are masked, as
    :func:`redact_error_body`. ``content=False`` (a token count, a compaction: nothing in it is the
    model talking to the user): every string is masked, decoded first so ``\\u``-escaped echoes are
    caught, except opaque values such as ``encrypted_content``."""
    if content:
        return redact_error_body(body)
    import orjson

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace")
        cleaned = redact(text)
        return body if cleaned == text else cleaned.encode()
    cleaned_payload = _all_strings(payload)
    return body if cleaned_payload == payload else orjson.dumps(cleaned_payload)


def redact_error_frames(chunk: bytes) -> bytes:
    """Relayed SSE bytes: each ``data:`` line that carries an ``error`` is rewritten by
    :func:`redact_error_json`; every other byte passes as it came (one substring scan per chunk)."""
    if _ERROR_KEY not in chunk:
        return chunk
    return _DATA_LINE.sub(lambda m: b"data: " + redact_error_json(m.group(1)) if _ERROR_KEY in m.group(1)
                          else m.group(0), chunk)


class PartialEventTooLarge(ValueError):
    """An upstream event grew past the relay's cap without its blank-line end."""


def _events_end(data: bytes | bytearray, start: int) -> int:
    """Where the last complete SSE event in ``data[start:]`` ends (after its blank line), or -1."""
    end = -1
    for terminator in (b"\n\n", b"\n\r\n", b"\r\r"):
        at = data.rfind(terminator, start)
        if at >= 0:
            end = max(end, at + len(terminator))
    return end


class RelayedEvents:
    """Relayed SSE bytes, redacted per *complete* event, however the upstream cut them into reads.

    An error frame split across two reads (its key in both halves, or ``"error"`` itself cut) is
    masked as a whole: bytes after the last blank line are held until their event ends, and every
    complete event goes out with the read that completed it. A read that ends on an event boundary
    (nearly every one) passes without a copy. The held part is bounded by ``max_partial`` bytes
    (:class:`PartialEventTooLarge` beyond it), and kept in one ``bytearray`` searched only where it
    grew, so a huge event in small pieces costs linear time.
    """

    __slots__ = ("_held", "_max")

    def __init__(self, max_partial: int) -> None:
        self._held = bytearray()
        self._max = max_partial

    def feed(self, chunk: bytes) -> bytes:
        """The complete events ``chunk`` finishes, redacted; b"" while an event is still open."""
        held = self._held
        if not held:
            if chunk.endswith((b"\n\n", b"\r\r", b"\n\r\n")):  # nearly every read: whole events
                return chunk if _ERROR_KEY not in chunk else redact_error_frames(chunk)
            end = _events_end(chunk, 0)
            if end < 0:
                held += chunk
                self._check()
                return b""
            held += memoryview(chunk)[end:]
            self._check()
            return redact_error_frames(chunk[:end])
        resume = max(0, len(held) - 2)  # a boundary may straddle the old end and the new chunk
        held += chunk
        end = _events_end(held, resume)
        if end < 0:
            self._check()
            return b""
        out = bytes(held[:end])
        del held[:end]
        return redact_error_frames(out)

    def flush(self) -> bytes:
        """What is left when the upstream ended without a final blank line."""
        rest, self._held = bytes(self._held), bytearray()
        return redact_error_frames(rest) if rest else b""

    def _check(self) -> None:
        if len(self._held) > self._max:
            size, self._held = len(self._held), bytearray()
            raise PartialEventTooLarge(f"an upstream event exceeded {self._max} bytes ({size} bytes without an end)")
