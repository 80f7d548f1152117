"""The hub's request → Anthropic Messages request body (pure).

Follows shared/research/vendors.md §A.5. Anthropic is stricter than OpenAI in ways clients never
see with OpenAI: turns must alternate, every ``tool_use`` must be answered, ``max_tokens`` is
required, and extended thinking constrains sampling and tool choice. This module satisfies those
rules or refuses the request with a 400 naming the parameter, before anything is sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.hub.model import (
    Image,
    Item,
    ModelRequest,
    Part,
    Reasoning,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    text_of_parts,
)

JSON_TOOL = "json_response"  # the forced tool that carries response_format json_schema output
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024
DEFAULT_MAX_TOKENS = 8192


def to_messages_body(request: ModelRequest, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    system, messages = to_messages(request.items)
    system = request.system + system
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if system:
        body["system"] = [{"type": "text", "text": text} for text in system]

    requested_max = request.max_output_tokens
    max_tokens = requested_max or default_max_tokens

    tools = [_tool(t) for t in request.tools]
    tool_choice = _tool_choice(request)
    if request.output_format is not None and request.output_format.kind != "text":
        schema = request.output_format.schema or {"type": "object", "additionalProperties": True}
        tools.append({"name": JSON_TOOL, "description": "Reply with the final answer as this JSON object.",
                      "input_schema": schema})
        tool_choice = {"type": "tool", "name": JSON_TOOL}
    if tools:
        body["tools"] = tools
    if tool_choice is not None and (tools or tool_choice.get("type") == "none"):
        body["tool_choice"] = tool_choice

    thinking_budget = _thinking_budget(request.reasoning_effort, max_tokens, requested_max is not None, tool_choice,
                                       messages)
    if thinking_budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
        if requested_max is None:
            max_tokens = thinking_budget + default_max_tokens
    else:
        if request.temperature is not None:
            body["temperature"] = request.temperature
        elif request.top_p is not None:  # current models refuse both at once; temperature is the common knob
            body["top_p"] = request.top_p
    body["max_tokens"] = max_tokens

    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    return body


def to_messages(items: list[Item]) -> tuple[list[str], list[dict[str, Any]]]:
    """(extra system texts, alternating Anthropic messages); checks every tool call is answered."""
    messages: list[dict[str, Any]] = []
    open_calls: dict[str, str] = {}  # tool_use id → where the client made it

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for item in items:
        if isinstance(item, ToolResult):
            if item.call_id not in open_calls:
                raise BadRequest(f"{item.where or 'A tool result'} answers tool call {item.call_id!r}, which no "
                                 "earlier assistant message made (or which was already answered).",
                                 param=f"{item.where}.tool_call_id" if item.where else None,
                                 code="invalid_tool_call_id")
            del open_calls[item.call_id]
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": item.call_id,
                                      "content": _tool_result_content(item)}
            if item.is_error:
                result["is_error"] = True
            append("user", [result])
            continue
        if isinstance(item, ToolCall):
            open_calls[item.call_id] = item.where
            append("assistant", [_tool_use(item)])
            continue
        if isinstance(item, Reasoning):
            continue  # a foreign (non-Claude) reasoning item cannot be replayed to Claude
        _require_answered(open_calls)
        if item.role == "user":
            append("user", [_block(part) for part in item.parts if not (isinstance(part, Text) and not part.text)])
        else:
            text = text_of_parts(item.parts)
            append("assistant", [{"type": "text", "text": text}] if text else [])
    _require_answered(open_calls)
    if not messages:
        raise BadRequest("At least one user message is required.", param="messages")
    return [], messages


def _require_answered(open_calls: dict[str, str]) -> None:
    if open_calls:
        call_id, where = next(iter(open_calls.items()))
        made_in = where.rsplit(".tool_calls", 1)[0] if ".tool_calls" in where else where
        raise BadRequest(
            f"The tool call {call_id!r} made in {made_in or 'the conversation'} has no tool message answering it; "
            "Claude requires every tool call to be answered before the conversation continues.",
            param=f"{made_in}.tool_calls" if made_in.startswith("messages") else made_in or None,
            code="unanswered_tool_call")


def _block(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        return _image(part.url)
    media, data = _split_data_url(part.data_url)
    if data is None:
        raise BadRequest("Only inline files (a data: URL in 'file_data') are supported.", param="file")
    return {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media, data = _split_data_url(url)
        if data is not None and media.startswith("image/"):
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    elif url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest("An image must be an https URL or a data:image/...;base64 URL.", param="image_url")


def _split_data_url(url: str) -> tuple[str, str | None]:
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return "", None
    return header[5:-7], data


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        arguments = {}
    return {"type": "tool_use", "id": call.call_id, "name": call.name,
            "input": arguments if isinstance(arguments, dict) else {}}


def _tool_result_content(result: ToolResult) -> Any:
    if len(result.parts) == 1 and isinstance(result.parts[0], Text):
        return result.parts[0].text
    return [_block(part) for part in result.parts]


def _tool(tool: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        spec["description"] = tool.description
    return spec


def _tool_choice(request: ModelRequest) -> dict[str, Any] | None:
    parallel = request.parallel_tool_calls
    if request.forced_tool:
        result: dict[str, Any] | None = {"type": "tool", "name": request.forced_tool}
    elif request.tool_choice == "none":
        return {"type": "none"}
    elif request.tool_choice == "required":
        result = {"type": "any"}
    elif request.tool_choice == "auto" or parallel is False:
        result = {"type": "auto"}
    else:
        result = None
    if result is not None and parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def _thinking_budget(effort: str | None, max_tokens: int, max_given: bool, tool_choice: dict[str, Any] | None,
                     messages: list[dict[str, Any]]) -> int | None:
    if effort is None or effort == "none":
        return None
    if effort not in THINKING_BUDGETS:
        raise BadRequest(f"'reasoning_effort' must be one of none, {', '.join(THINKING_BUDGETS)}; got {effort!r}.",
                         param="reasoning_effort")
    # Thinking is refused with a forced tool, and with tool history whose signed thinking blocks
    # OpenAI clients cannot send back: answer without thinking rather than fail.
    if tool_choice is not None and tool_choice.get("type") in ("any", "tool"):
        return None
    if any(block.get("type") == "tool_use" for m in messages for block in m["content"]):
        return None
    budget = THINKING_BUDGETS[effort]
    if max_given:
        if max_tokens <= MIN_THINKING_BUDGET:
            return None
        budget = min(budget, max_tokens - 1)
    return max(budget, MIN_THINKING_BUDGET)
