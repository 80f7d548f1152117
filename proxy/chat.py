"""Parsing and validating an incoming Chat Completions request.

Validation is deliberately shallow and cheap: it checks what every adapter relies on (a model, a
list of well-formed messages, single-choice generation) and names the offending parameter, so a
client gets a clear 400 from us instead of a confusing one from an upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadRequest

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(slots=True)
class ChatRequest:
    """A validated Chat Completions request; ``body`` is the client's JSON object as sent."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    body: dict[str, Any]
    raw: bytes = b""  # the body exactly as received, for upstreams that take it unchanged


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Decode and validate a request body, raising :class:`BadRequest` naming the bad param."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")

    model = body.get("model")
    if model is None:
        raise BadRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string.", param="model", code="invalid_type")

    messages = body.get("messages")
    if messages is None:
        raise BadRequest(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for position, message in enumerate(messages):
        _check_message(position, message)

    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("Only n=1 is supported by this proxy.", param="n", code="unsupported_value")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream", code="invalid_type")

    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise BadRequest("'stream_options' must be an object.", param="stream_options", code="invalid_type")
        include_usage = bool(stream_options.get("include_usage"))

    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)

    return ChatRequest(
        model=model.strip(), messages=messages, stream=stream, include_usage=include_usage, body=body, raw=raw
    )


def _check_message(position: int, message: Any) -> None:
    where = f"messages[{position}]"
    if not isinstance(message, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where, code="invalid_type")
    role = message.get("role")
    if role not in _ROLES:
        raise BadRequest(
            f"'{where}.role' must be one of system, developer, user, assistant, tool; got {role!r}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise BadRequest(
            f"'{where}.content' must be a string or an array of content parts.",
            param=f"{where}.content",
            code="invalid_type",
        )
    if isinstance(content, list):
        for index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise BadRequest(
                    f"'{where}.content[{index}]' must be an object with a 'type'.",
                    param=f"{where}.content[{index}]",
                    code="invalid_type",
                )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise BadRequest(
            f"'{where}.tool_call_id' is required for tool messages.",
            param=f"{where}.tool_call_id",
            code="missing_required_parameter",
        )
    if role == "user" and content is None:
        raise BadRequest(f"'{where}.content' is required for user messages.", param=f"{where}.content")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools", code="invalid_type")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(
                f"'tools[{index}].function.name' is required.",
                param=f"tools[{index}].function.name",
                code="missing_required_parameter",
            )


def text_of(content: Any) -> str:
    """The plain text of a message's content (a string, or the text parts of an array)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") in ("text", "input_text"))


def response_format_of(value: Any) -> tuple[str, dict[str, Any] | None]:
    """Validate ``response_format``: (``text`` | ``json_object`` | ``json_schema``, the json_schema spec)."""
    if value is None:
        return "text", None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return kind, None
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise BadRequest("'response_format.json_schema.schema' must be an object.", param="response_format.json_schema")
        return kind, spec
    raise BadRequest("'response_format.type' must be 'text', 'json_object' or 'json_schema'.", param="response_format")
