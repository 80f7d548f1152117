"""Chat Completions request → Anthropic Messages request body (pure).

Follows shared/research/vendors.md §A.5. Anthropic is stricter than OpenAI in ways clients never
see with OpenAI: turns must alternate, every ``tool_use`` must be answered, ``max_tokens`` is
required, and extended thinking constrains sampling and tool choice. This module satisfies those
rules or refuses the request with a 400 naming the parameter, before anything is sent.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.chat import ChatRequest, response_format_of, text_of
from proxy.errors import BadRequest

JSON_TOOL = "json_response"  # the forced tool that carries response_format json_schema output
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024
DEFAULT_MAX_TOKENS = 8192


def to_messages_body(chat: ChatRequest, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    raw = chat.body
    system, messages = to_messages(chat.messages)
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if system:
        body["system"] = [{"type": "text", "text": text} for text in system]

    requested_max = raw.get("max_completion_tokens") or raw.get("max_tokens")
    if requested_max is not None and (not isinstance(requested_max, int) or requested_max < 1):
        raise BadRequest("'max_tokens' must be a positive integer.", param="max_tokens")
    max_tokens = requested_max or default_max_tokens

    tools = [_tool(t) for t in raw.get("tools") or ()]
    tool_choice = _tool_choice(raw.get("tool_choice"), raw.get("parallel_tool_calls"))
    json_schema = _json_schema(raw.get("response_format"))
    if json_schema is not None:
        tools.append({"name": JSON_TOOL, "description": "Reply with the final answer as this JSON object.",
                      "input_schema": json_schema})
        tool_choice = {"type": "tool", "name": JSON_TOOL}
    if tools:
        body["tools"] = tools
    if tool_choice is not None and (tools or tool_choice.get("type") == "none"):
        body["tool_choice"] = tool_choice

    thinking_budget = _thinking_budget(raw, max_tokens, requested_max is not None, tool_choice, messages)
    if thinking_budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
        if requested_max is None:
            max_tokens = thinking_budget + default_max_tokens
    else:
        for name in ("temperature", "top_p"):
            value = raw.get(name)
            if value is not None:
                body[name] = value
        if "temperature" in body and "top_p" in body:
            del body["top_p"]  # current models refuse both at once; temperature is the common knob
    body["max_tokens"] = max_tokens

    stop = raw.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(raw.get("user"), str) and raw["user"]:
        body["metadata"] = {"user_id": raw["user"]}
    return body


def to_messages(chat_messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, alternating Anthropic messages); checks every tool call is answered."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    open_calls: dict[str, int] = {}  # tool_use id → position of the assistant message that made it

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for position, message in enumerate(chat_messages):
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system.append(text)
            continue
        if role in ("tool", "function"):
            call_id = message.get("tool_call_id") or message.get("name")
            if call_id not in open_calls:
                raise BadRequest(f"messages[{position}] answers tool call {call_id!r}, which no earlier assistant "
                                 "message made (or which was already answered).",
                                 param=f"messages[{position}].tool_call_id", code="invalid_tool_call_id")
            del open_calls[call_id]
            append("user", [{"type": "tool_result", "tool_use_id": call_id, "content": _tool_result_content(content)}])
            continue
        _require_answered(open_calls, position)
        if role == "user":
            append("user", _user_blocks(position, content))
        else:
            blocks = [{"type": "text", "text": t} for t in [_assistant_text(content)] if t]
            for call in message.get("tool_calls") or ():
                block = _tool_use(position, call)
                open_calls[block["id"]] = position
                blocks.append(block)
            append("assistant", blocks)
    _require_answered(open_calls, len(chat_messages))
    if not messages:
        raise BadRequest("At least one user message is required.", param="messages")
    return system, messages


def _require_answered(open_calls: dict[str, int], position: int) -> None:
    if open_calls:
        call_id, made_at = next(iter(open_calls.items()))
        raise BadRequest(
            f"The tool call {call_id!r} made in messages[{made_at}] has no tool message answering it; Claude "
            "requires every tool call to be answered before the conversation continues.",
            param=f"messages[{made_at}].tool_calls", code="unanswered_tool_call")


def _user_blocks(position: int, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part["type"]
        where = f"messages[{position}].content[{index}]"
        if kind in ("text", "input_text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(where, part.get("image_url")))
        elif kind == "file":
            file_data = (part.get("file") or {}).get("file_data", "")
            media, data = _split_data_url(file_data)
            if data is None:
                raise BadRequest("Only inline files (a data: URL in 'file_data') are supported.", param=f"{where}.file")
            blocks.append({"type": "document", "source": {"type": "base64", "media_type": media, "data": data}})
        else:
            raise BadRequest(f"Content parts of type {kind!r} are not supported by Claude models.", param=where)
    return blocks


def _image(where: str, image: Any) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        media, data = _split_data_url(url)
        if data is not None and media.startswith("image/"):
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest("'image_url.url' must be an https URL or a data:image/...;base64 URL.", param=f"{where}.image_url")


def _split_data_url(url: str) -> tuple[str, str | None]:
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return "", None
    return header[5:-7], data


def _assistant_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or part.get("refusal") or "" for part in content)
    return content or ""


def _tool_use(position: int, call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name") or not call.get("id"):
        raise BadRequest("Each assistant tool call needs an 'id' and 'function.name'.",
                         param=f"messages[{position}].tool_calls")
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        arguments = {}
    return {"type": "tool_use", "id": call["id"], "name": function["name"],
            "input": arguments if isinstance(arguments, dict) else {}}


def _tool_result_content(content: Any) -> Any:
    if isinstance(content, list):
        return [{"type": "text", "text": p.get("text", "")} for p in content if p.get("type") in ("text", "input_text")]
    return content or ""


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    spec = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return spec


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest("'tool_choice' must be 'auto', 'none', 'required' or a named function.", param="tool_choice")
    if result is not None and parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def _json_schema(response_format: Any) -> dict[str, Any] | None:
    kind, spec = response_format_of(response_format)
    if kind == "text":
        return None
    return spec["schema"] if spec is not None else {"type": "object", "additionalProperties": True}


def _thinking_budget(raw: dict[str, Any], max_tokens: int, max_given: bool, tool_choice: dict[str, Any] | None,
                     messages: list[dict[str, Any]]) -> int | None:
    effort = raw.get("reasoning_effort")
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
