"""The Responses API request codec: validate a ``POST /v1/responses`` body and decode it into the hub.

Validation covers every field the proxy or an adapter reads (a 400 naming the ``param`` otherwise).
Items and tools that only the Codex backend understands (built-in tools, shell calls, compaction…)
are accepted as they are, for the Codex pass-through; a translating adapter refuses them with a 400
through :meth:`proxy.hub.model.ModelRequest.require_translatable`.
"""

from __future__ import annotations

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
    Reasoning,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)

_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return checks.array(value, "input")


def parse_responses_request(body: dict[str, Any], raw: bytes) -> ModelRequest:
    """Validate a (``previous_response_id``-expanded) Responses body into a :class:`ModelRequest`."""
    model = required_model(body)
    items = input_items(body)
    if not items:
        raise BadRequest("'input' must not be empty.", param="input", code="missing_required_parameter")
    request = ModelRequest(model=model, inbound=Inbound("responses", body, raw))
    instructions = checks.opt_string(body, "instructions")
    if instructions:
        request.system.append(instructions)
    _decode_items(items, request)
    _decode_tools(body, request)
    request.parallel_tool_calls = checks.opt_boolean(body, "parallel_tool_calls")
    request.stream = bool(checks.opt_boolean(body, "stream"))
    request.include_usage = True
    request.max_output_tokens = checks.opt_integer(body, "max_output_tokens", minimum=1)
    request.temperature = checks.opt_number(body, "temperature", minimum=0, maximum=2)
    request.top_p = checks.opt_number(body, "top_p", minimum=0, maximum=1)
    reasoning = checks.opt_obj(body, "reasoning")
    if reasoning is not None:
        request.reasoning_effort = checks.opt_choice(reasoning, "effort", REASONING_EFFORTS, "reasoning.effort")
        request.reasoning_summary = checks.opt_string(reasoning, "summary", "reasoning.summary", max_length=32)
    request.output_format = _output_format(checks.opt_obj(body, "text"))
    request.user = checks.opt_string(body, "user", max_length=512)
    request.prompt_cache_key = checks.opt_string(body, "prompt_cache_key", max_length=1024) or None
    request.metadata = checks.opt_obj(body, "metadata")
    checks.opt_boolean(body, "store")
    checks.opt_string(body, "previous_response_id", max_length=256)
    include = body.get("include")
    if include is not None:
        for index, entry in enumerate(checks.array(include, "include", max_items=32)):
            checks.string(entry, f"include[{index}]", max_length=128)
    for name in ("truncation", "service_tier"):
        checks.opt_string(body, name, max_length=64)
    checks.opt_obj(body, "stream_options")
    return request


def _decode_items(items: list[Any], request: ModelRequest) -> None:
    calls: set[str] = set()
    for index, item in enumerate(items):
        where = f"input[{index}]"
        checks.obj(item, where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _decode_message(item, where, request)
        elif kind == "function_call":
            call_id = checks.string(item.get("call_id"), f"{where}.call_id", non_empty=True, max_length=512)
            name = checks.string(item.get("name"), f"{where}.name", non_empty=True, max_length=256)
            arguments = checks.opt_string(item, "arguments", f"{where}.arguments") or "{}"
            request.items.append(ToolCall(call_id, name, arguments, where=where))
            calls.add(call_id)
        elif kind == "function_call_output":
            call_id = checks.string(item.get("call_id"), f"{where}.call_id", non_empty=True, max_length=512)
            if call_id not in calls:
                raise BadRequest(f"{where} answers call {call_id!r}, but no earlier function_call item made it.",
                                 param=f"{where}.call_id", code="invalid_tool_call_id")
            output = item.get("output")
            parts = [Text(output)] if isinstance(output, str) else _parts(checks.array(output, f"{where}.output"),
                                                                          f"{where}.output", request)
            request.items.append(ToolResult(call_id, parts, where=where))
        elif kind == "reasoning":
            summary = []
            for position, part in enumerate(checks.array(item.get("summary", []), f"{where}.summary")):
                checks.obj(part, f"{where}.summary[{position}]")
                summary.append(checks.string(part.get("text"), f"{where}.summary[{position}].text"))
            encrypted = checks.opt_string(item, "encrypted_content", f"{where}.encrypted_content")
            request.items.append(Reasoning(summary, encrypted, checks.opt_string(item, "id", f"{where}.id")))
        elif isinstance(kind, str) and kind:
            request.untranslatable.append((f"{where}.type", f"input items of type {kind!r:.60}"))
        else:
            raise BadRequest(f"'{where}' needs a 'type' (or a 'role' for a message).", param=where,
                             code="invalid_value")


def _decode_message(item: dict[str, Any], where: str, request: ModelRequest) -> None:
    role = checks.choice(item.get("role"), f"{where}.role", _ROLES)
    content = item.get("content")
    if isinstance(content, str):
        parts: list[Part] = [Text(content)]
    else:
        parts = _parts(checks.array(content, f"{where}.content"), f"{where}.content", request)
    if role in ("system", "developer"):
        text = "".join(part.text for part in parts if isinstance(part, Text))
        if text:
            request.system.append(text)
    else:
        request.items.append(Message(role, parts))


def _parts(values: list[Any], where: str, request: ModelRequest) -> list[Part]:
    parts: list[Part] = []
    for index, part in enumerate(values):
        at = f"{where}[{index}]"
        checks.obj(part, at)
        kind = checks.string(part.get("type"), f"{at}.type")
        if kind in _TEXT_PARTS:
            parts.append(Text(checks.string(part.get("text"), f"{at}.text")))
        elif kind == "refusal":
            parts.append(Text(checks.string(part.get("refusal"), f"{at}.refusal")))
        elif kind == "input_image":
            url = part.get("image_url")
            if url is None:
                request.untranslatable.append((f"{at}.image_url", "images given by file_id"))
                continue
            detail = checks.opt_choice(part, "detail", ("auto", "low", "high"), f"{at}.detail")
            parts.append(image_part(checks.string(url, f"{at}.image_url", non_empty=True), detail, f"{at}.image_url"))
        elif kind == "input_file":
            data = checks.opt_string(part, "file_data", f"{at}.file_data")
            if not data:
                request.untranslatable.append((f"{at}.file_data", "files given by file_id or URL"))
                continue
            parts.append(File(data, checks.opt_string(part, "filename", f"{at}.filename") or "file"))
        else:
            request.untranslatable.append((f"{at}.type", f"content parts of type {kind!r:.60}"))
    return parts


def _decode_tools(body: dict[str, Any], request: ModelRequest) -> None:
    tools = body.get("tools")
    for index, tool in enumerate(checks.array(tools, "tools") if tools is not None else ()):
        where = f"tools[{index}]"
        checks.obj(tool, where)
        kind = checks.string(tool.get("type"), f"{where}.type")
        if kind != "function":
            request.untranslatable.append((f"{where}.type", f"tools of type {kind!r:.60}"))
            continue
        name = checks.string(tool.get("name"), f"{where}.name", non_empty=True, max_length=256)
        description = checks.opt_string(tool, "description", f"{where}.description") or ""
        parameters = checks.opt_obj(tool, "parameters", f"{where}.parameters") or {"type": "object", "properties": {}}
        request.tools.append(Tool(name, description, parameters, bool(checks.opt_boolean(tool, "strict", f"{where}.strict"))))
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        request.tool_choice = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        request.forced_tool = checks.string(choice.get("name"), "tool_choice.name", non_empty=True)
    elif isinstance(choice, dict):
        request.untranslatable.append(("tool_choice", f"tool_choice of type {str(choice.get('type'))!r:.60}"))
    else:
        raise BadRequest("'tool_choice' must be 'auto', 'none', 'required' or an object.", param="tool_choice",
                         code="invalid_value")


def _output_format(text: dict[str, Any] | None) -> OutputFormat | None:
    if text is None:
        return None
    value = text.get("format")
    if value is None:
        return None
    spec = checks.obj(value, "text.format")
    kind = checks.choice(spec.get("type"), "text.format.type", ("text", "json_object", "json_schema"))
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object")
    schema = checks.obj(spec.get("schema"), "text.format.schema")
    return OutputFormat("json_schema", checks.opt_string(spec, "name", "text.format.name", max_length=256) or "response",
                        schema, bool(checks.opt_boolean(spec, "strict", "text.format.strict")),
                        checks.opt_string(spec, "description", "text.format.description"))


def decode_body(raw: bytes) -> dict[str, Any]:
    return decode_json_object(raw)


__all__ = ["parse_responses_request", "input_items", "decode_body", "Item"]
