"""Parsing and validating an incoming Chat Completions request.

Every field that the proxy or an adapter reads is type- and range-checked here, once, at the edge
(the one validator for this API): anything a client can send wrong is a 400 naming the ``param``,
never an exception inside an adapter. Fields the proxy only forwards are left to the upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.errors import BadRequest
from proxy.hub import checks
from proxy.hub.checks import (
    REASONING_EFFORTS,
    decode_json_object,
    image_part,
    required_model,
)
from proxy.hub.model import (
    File,
    Inbound,
    Item,
    Message,
    ModelRequest,
    OutputFormat,
    Part,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Content part types each role may carry (the Chat Completions API's own rules).
_PART_TYPES = {
    "user": ("text", "input_text", "image_url", "input_audio", "file"),
    "assistant": ("text", "output_text", "refusal"),
}
_TEXT_ONLY = ("text", "input_text")


@dataclass(slots=True)
class ChatRequest:
    """A validated Chat Completions request; ``body`` is the client's JSON object as sent.

    Every field any adapter reads has been type-checked by :func:`parse_chat_request`, so adapters
    may index it without guarding.
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    body: dict[str, Any]
    raw: bytes = b""  # the body exactly as received, for upstreams that take it unchanged


def parse_chat_request(raw: bytes) -> ModelRequest:
    """Decode and validate a Chat Completions body into the hub's :class:`ModelRequest`,
    raising :class:`BadRequest` naming the bad param."""
    return to_model_request(validate_chat_request(raw))


def validate_chat_request(raw: bytes) -> ChatRequest:
    """Decode and validate a request body, raising :class:`BadRequest` naming the bad param."""
    body = decode_json_object(raw)
    model = required_model(body)
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
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream", code="invalid_type")
    stream_options = checks.opt_obj(body, "stream_options")
    include_usage = bool(stream_options and checks.opt_boolean(stream_options, "include_usage",
                                                                "stream_options.include_usage"))
    _check_generation(body)
    return ChatRequest(model=model, messages=messages, stream=bool(stream), include_usage=include_usage, body=body,
                       raw=raw)


def _check_generation(body: dict[str, Any]) -> None:
    """The optional parameters adapters read or forward, each checked for its type and range.

    Only the parameters the body has are looked at, in the client's order (so the first bad one is the one
    named): a body sends a handful of the two dozen, and a call per absent one was a few percent of a small
    request's instructions."""
    for name in body:
        check = _GENERATION_CHECKS.get(name)
        if check is not None:
            check(body)


def _check_stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        for index, item in enumerate(checks.array(stop, "stop", max_items=4)):
            checks.string(item, f"stop[{index}]")


def _check_reasoning(body: dict[str, Any]) -> None:
    reasoning = checks.opt_obj(body, "reasoning")
    if reasoning is not None:
        checks.opt_choice(reasoning, "effort", REASONING_EFFORTS, "reasoning.effort")
        checks.opt_string(reasoning, "summary", "reasoning.summary")


def _check_tools_of(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)


_GENERATION_CHECKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tools": _check_tools_of,
    "tool_choice": lambda body: _check_tool_choice(body.get("tool_choice")),
    "functions": lambda body: _check_legacy_functions(body),
    "function_call": lambda body: _check_legacy_functions(body),
    "parallel_tool_calls": lambda body: checks.opt_boolean(body, "parallel_tool_calls"),
    "stop": _check_stop,
    "reasoning_effort": lambda body: checks.opt_choice(body, "reasoning_effort", REASONING_EFFORTS),
    "reasoning": _check_reasoning,
    "response_format": lambda body: response_format_of(body.get("response_format")),
    "prompt_cache_key": lambda body: checks.opt_string(body, "prompt_cache_key", max_length=1024),
    "user": lambda body: checks.opt_string(body, "user", max_length=512),
    "metadata": lambda body: checks.opt_obj(body, "metadata"),
    "max_tokens": lambda body: checks.opt_integer(body, "max_tokens", minimum=1),
    "max_completion_tokens": lambda body: checks.opt_integer(body, "max_completion_tokens", minimum=1),
    "temperature": lambda body: checks.opt_number(body, "temperature", minimum=0, maximum=2),
    "top_p": lambda body: checks.opt_number(body, "top_p", minimum=0, maximum=1),
    "presence_penalty": lambda body: checks.opt_number(body, "presence_penalty", minimum=-2, maximum=2),
    "frequency_penalty": lambda body: checks.opt_number(body, "frequency_penalty", minimum=-2, maximum=2),
    "seed": lambda body: checks.opt_integer(body, "seed"),
    "logprobs": lambda body: checks.opt_boolean(body, "logprobs"),
    "top_logprobs": lambda body: checks.opt_integer(body, "top_logprobs", minimum=0, maximum=20),
    "logit_bias": lambda body: checks.opt_obj(body, "logit_bias"),
    "service_tier": lambda body: checks.opt_string(body, "service_tier", max_length=64),
}


def _check_message(position: int, message: Any) -> None:
    where = f"messages[{position}]"
    if not isinstance(message, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where, code="invalid_type")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise BadRequest(
            f"'{where}.role' must be one of system, developer, user, assistant, tool; got {role!r:.60}.",
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
        allowed = _PART_TYPES.get(role, _TEXT_ONLY)
        for index, part in enumerate(content):
            _check_part(f"{where}.content[{index}]", part, allowed)
    checks.opt_string(message, "name", f"{where}.name", max_length=256)
    checks.opt_string(message, "reasoning_content", f"{where}.reasoning_content")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        for index, call in enumerate(checks.array(tool_calls, f"{where}.tool_calls")):
            _check_tool_call(f"{where}.tool_calls[{index}]", call)
    legacy_call = message.get("function_call")  # the deprecated single call: relayed as sent, so checked too
    if legacy_call is not None:
        _check_function(f"{where}.function_call", legacy_call)
    call_id = message.get("tool_call_id")
    if role == "tool" and not isinstance(call_id, str):
        raise BadRequest(
            f"'{where}.tool_call_id' is required for tool messages.",
            param=f"{where}.tool_call_id",
            code="missing_required_parameter",
        )
    if call_id is not None:
        checks.string(call_id, f"{where}.tool_call_id", max_length=512)
    if role == "user" and content is None:
        raise BadRequest(f"'{where}.content' is required for user messages.", param=f"{where}.content")


def _check_part(where: str, part: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise BadRequest(f"'{where}' must be an object with a 'type'.", param=where, code="invalid_type")
    kind = part["type"]
    if kind not in allowed:
        raise BadRequest(f"'{where}.type' {kind!r:.60} is not allowed here; use one of {', '.join(allowed)}.",
                         param=f"{where}.type", code="invalid_value")
    if kind in ("text", "input_text", "output_text"):
        checks.string(part.get("text"), f"{where}.text")
    elif kind == "refusal":
        checks.string(part.get("refusal"), f"{where}.refusal")
    elif kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, dict):
            checks.string(image.get("url"), f"{where}.image_url.url", non_empty=True)
            checks.opt_choice(image, "detail", ("auto", "low", "high"), f"{where}.image_url.detail")
        else:
            checks.string(image, f"{where}.image_url", non_empty=True)
    elif kind == "file":
        file = checks.obj(part.get("file"), f"{where}.file")
        for name in ("file_data", "filename", "file_id"):
            checks.opt_string(file, name, f"{where}.file.{name}")
    elif kind == "input_audio":
        checks.obj(part.get("input_audio"), f"{where}.input_audio")


def _check_tool_call(where: str, call: Any) -> None:
    checks.obj(call, where)
    checks.string(call.get("id"), f"{where}.id", non_empty=True, max_length=512)
    checks.opt_string(call, "type", f"{where}.type")
    _check_function(f"{where}.function", call.get("function"))


def _check_function(where: str, function: Any) -> None:
    """A call's ``{"name", "arguments"}`` (in ``tool_calls[i].function`` or a legacy ``function_call``)."""
    checks.obj(function, where)
    checks.string(function.get("name"), f"{where}.name", non_empty=True, max_length=256)
    checks.opt_string(function, "arguments", f"{where}.arguments")


def _check_legacy_functions(body: dict[str, Any]) -> None:
    """The deprecated ``functions`` and ``function_call`` parameters (``tools`` and ``tool_choice``
    before them), relayed as sent to an OpenAI-compatible upstream: their types are checked here."""
    functions = body.get("functions")
    if functions is not None:
        for index, function in enumerate(checks.array(functions, "functions")):
            where = f"functions[{index}]"
            checks.obj(function, where)
            checks.string(function.get("name"), f"{where}.name", non_empty=True, max_length=256)
            checks.opt_string(function, "description", f"{where}.description")
            checks.opt_obj(function, "parameters", f"{where}.parameters")
    choice = body.get("function_call")
    if choice is None or choice in ("none", "auto"):
        return
    if isinstance(choice, dict) and isinstance(choice.get("name"), str) and choice["name"]:
        return
    raise BadRequest("'function_call' must be 'auto', 'none' or {'name': ...}.", param="function_call",
                     code="invalid_value")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools", code="invalid_type")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(
                f"'{where}.function.name' is required.",
                param=f"{where}.function.name",
                code="missing_required_parameter",
            )
        checks.string(name, f"{where}.function.name", max_length=256)
        checks.opt_string(tool, "type", f"{where}.type")
        checks.opt_string(function, "description", f"{where}.function.description")
        checks.opt_obj(function, "parameters", f"{where}.function.parameters")
        checks.opt_boolean(function, "strict", f"{where}.function.strict")


def _check_tool_choice(choice: Any) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if isinstance(name, str) and name:
            return
    raise BadRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice", code="invalid_value")


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
        checks.opt_string(spec, "name", "response_format.json_schema.name", max_length=256)
        checks.opt_string(spec, "description", "response_format.json_schema.description")
        checks.opt_boolean(spec, "strict", "response_format.json_schema.strict")
        return kind, spec
    raise BadRequest("'response_format.type' must be 'text', 'json_object' or 'json_schema'.", param="response_format")


# -- Chat Completions → the hub ------------------------------------------------------------------


def to_model_request(chat: ChatRequest) -> ModelRequest:
    """The validated Chat request as the neutral :class:`ModelRequest`."""
    body = chat.body
    system, items = _items(chat.messages)
    request = ModelRequest(model=chat.model, inbound=Inbound("chat", body, chat.raw), system=system, items=items,
                           stream=chat.stream, include_usage=chat.include_usage)
    request.tools = [_tool(tool["function"]) for tool in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        request.forced_tool = function["name"] if isinstance(function, dict) else choice["name"]
    else:
        request.tool_choice = choice
    request.parallel_tool_calls = body.get("parallel_tool_calls")
    request.max_output_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    request.temperature = body.get("temperature")
    request.top_p = body.get("top_p")
    stop = body.get("stop")
    request.stop = [stop] if isinstance(stop, str) else list(stop or ())
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    request.reasoning_effort = body.get("reasoning_effort") or reasoning.get("effort")
    request.reasoning_summary = reasoning.get("summary")
    request.output_format = _output_format(body.get("response_format"))
    request.user = body.get("user")
    request.prompt_cache_key = body.get("prompt_cache_key") or None
    request.metadata = body.get("metadata")
    return request


def _items(messages: list[dict[str, Any]]) -> tuple[list[str], list[Item]]:
    system: list[str] = []
    items: list[Item] = []
    known_calls: set[str] = set()
    for position, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        where = f"messages[{position}]"
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system.append(text)
        elif role == "user":
            items.append(Message("user", _user_parts(where, content)))
        elif role == "assistant":
            text = content if isinstance(content, str) else "".join(
                part.get("text") or part.get("refusal") or "" for part in content or ())
            if text:
                items.append(Message("assistant", [Text(text)]))
            for index, call in enumerate(message.get("tool_calls") or ()):
                function = call["function"]
                items.append(ToolCall(call["id"], function["name"], function.get("arguments") or "{}",
                                      where=f"{where}.tool_calls[{index}]"))
                known_calls.add(call["id"])
        else:  # tool, function
            call_id = message.get("tool_call_id") or message.get("name")
            if call_id not in known_calls:
                raise BadRequest(
                    f"{where} answers tool call {call_id!r}, but no earlier assistant message made that call.",
                    param=f"{where}.tool_call_id", code="invalid_tool_call_id")
            items.append(ToolResult(call_id, [Text(text_of(content))], where=where))
    return system, items


def _user_parts(where: str, content: Any) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for index, part in enumerate(content):
        kind = part["type"]
        at = f"{where}.content[{index}]"
        if kind in ("text", "input_text"):
            parts.append(Text(part["text"]))
        elif kind == "image_url":
            image = part["image_url"]
            url, detail = (image["url"], image.get("detail")) if isinstance(image, dict) else (image, None)
            parts.append(image_part(url, detail, f"{at}.image_url"))
        elif kind == "file":
            file = part["file"]
            if not file.get("file_data"):
                raise BadRequest("Only inline files ('file_data') are supported.", param=f"{at}.file")
            parts.append(File(file["file_data"], file.get("filename") or "file"))
        else:
            raise BadRequest(f"Content parts of type {kind!r} are not supported by this proxy.", param=at)
    return parts


def _tool(function: dict[str, Any]) -> Tool:
    return Tool(function["name"], function.get("description") or "",
                function.get("parameters") or {"type": "object", "properties": {}}, bool(function.get("strict", False)))


def _output_format(value: Any) -> OutputFormat | None:
    kind, spec = response_format_of(value)
    if kind == "text":
        return None
    if spec is None:
        return OutputFormat("json_object")
    return OutputFormat("json_schema", spec.get("name") or "response", spec["schema"], bool(spec.get("strict", False)),
                        spec.get("description") or None)
