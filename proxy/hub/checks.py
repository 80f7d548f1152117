"""Small type checks for client JSON, each raising a 400 that names the exact parameter.

Every request codec (Chat Completions, Responses, Messages) validates the fields the proxy reads
with these, once, at the edge, so adapters can index what they were given without guarding.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.hub.model import Image

# Values that may end up in an HTTP header or a log line upstream (model names, cache keys, ids):
# printable ASCII without spaces, bounded.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_TOKEN = re.compile(r"[\x21-\x7e]{1,256}")


def invalid(param: str, expected: str, value: Any, code: str = "invalid_type") -> BadRequest:
    shown = type(value).__name__ if not isinstance(value, (str, int, float, bool)) or isinstance(value, str) and len(value) > 60 else repr(value)
    return BadRequest(f"'{param}' must be {expected}; got {shown}.", param=param, code=code)


def obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(param, "an object", value)
    return value


def opt_obj(body: dict[str, Any], name: str, param: str | None = None) -> dict[str, Any] | None:
    value = body.get(name)
    return None if value is None else obj(value, param or name)


def array(value: Any, param: str, *, max_items: int | None = None, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(param, "an array", value)
    if non_empty and not value:
        raise BadRequest(f"'{param}' must not be empty.", param=param, code="invalid_value")
    if max_items is not None and len(value) > max_items:
        raise BadRequest(f"'{param}' has more than {max_items} items.", param=param, code="invalid_value")
    return value


def string(value: Any, param: str, *, max_length: int | None = None, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise invalid(param, "a string", value)
    if non_empty and not value:
        raise BadRequest(f"'{param}' must not be empty.", param=param, code="invalid_value")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"'{param}' is longer than {max_length} characters.", param=param, code="invalid_value")
    return value


def opt_string(body: dict[str, Any], name: str, param: str | None = None, **kwargs: Any) -> str | None:
    value = body.get(name)
    return None if value is None else string(value, param or name, **kwargs)


def token(value: Any, param: str) -> str:
    """A name that travels in headers and paths: printable ASCII, no spaces, 1–256 characters."""
    text = string(value, param)
    if not _TOKEN.fullmatch(text):
        raise BadRequest(f"'{param}' must be 1 to 256 printable ASCII characters without spaces.", param=param,
                         code="invalid_value")
    return text


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(param, "a boolean", value)
    return value


def opt_boolean(body: dict[str, Any], name: str, param: str | None = None) -> bool | None:
    value = body.get(name)
    return None if value is None else boolean(value, param or name)


def integer(value: Any, param: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(param, "an integer", value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f" ≥ {minimum}"
        high = "" if maximum is None else f" ≤ {maximum}"
        raise BadRequest(f"'{param}' must be{low}{' and' if low and high else ''}{high}.", param=param,
                         code="invalid_value")
    return value


def opt_integer(body: dict[str, Any], name: str, param: str | None = None, **kwargs: Any) -> int | None:
    value = body.get(name)
    return None if value is None else integer(value, param or name, **kwargs)


def number(value: Any, param: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise invalid(param, "a number", value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise BadRequest(f"'{param}' must be between {minimum} and {maximum}.", param=param, code="invalid_value")
    return float(value)


def opt_number(body: dict[str, Any], name: str, param: str | None = None, **kwargs: Any) -> float | None:
    value = body.get(name)
    return None if value is None else number(value, param or name, **kwargs)


def choice(value: Any, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(f"'{param}' must be one of {', '.join(allowed)}; got {value!r:.60}.", param=param,
                         code="invalid_value")
    return value


def opt_choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], param: str | None = None) -> str | None:
    value = body.get(name)
    return None if value is None else choice(value, param or name, allowed)


# How deeply a client's JSON may nest. orjson writes at most 255 levels and every door re-serialises
# what it was sent (upstream bodies, stored conversations), some of it a few levels deeper than it came.
MAX_JSON_DEPTH = 128
_COUNT_BELOW = 4096  # bodies up to this size count their brackets before the depth check (cheaper there)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``invalid_json`` (too deep included)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise too_deep() from None
        raise BadRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    # Only a body with more brackets than the limit can nest past it. Counting them costs two passes over the
    # body at about a byte a cycle, more than orjson re-encoding it: a large body is asked of orjson at once.
    if (len(raw) > _COUNT_BELOW or raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH) and \
            _depth_exceeds(body, MAX_JSON_DEPTH):
        raise too_deep()
    return body


def too_deep() -> BadRequest:
    return BadRequest(f"The request body's JSON is nested more than {MAX_JSON_DEPTH} levels deep; subrelay "
                      f"accepts at most {MAX_JSON_DEPTH}.", code="json_too_deep")


_ORJSON_MAX_DEPTH = 254  # containers orjson.dumps nests before "Recursion limit reached"


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels deep. Asked of orjson itself (C
    speed, ~8× faster than a walk in Python): the value wrapped in lists up to its encoder's limit."""
    for _ in range(_ORJSON_MAX_DEPTH - limit):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise BadRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string.", param="model", code="invalid_type")
    return token(model.strip(), "model")


def image_part(url: str, detail: str | None, param: str) -> Image:
    """An image from a client: an https/http URL or a ``data:image/...`` URL, else a 400."""
    if not url.startswith(("data:image/", "https://", "http://")):
        raise BadRequest("'image_url.url' must be an https URL or a data:image/... base64 URL.", param=param)
    return Image(url, detail if detail in ("auto", "low", "high") else None)
