"""The hub's request → a Chat Completions body, for clients that do not speak Chat themselves
(Responses, Anthropic Messages) reaching an OpenAI-compatible upstream (pure)."""

from __future__ import annotations

from typing import Any

from proxy.errors import BadRequest
from proxy.hub.model import (
    File,
    Image,
    ModelRequest,
    Part,
    Reasoning,
    Text,
    ToolCall,
    ToolResult,
    text_of_parts,
)


def to_chat_body(request: ModelRequest, model: str) -> dict[str, Any]:
    """A streaming Chat Completions body (usage included) carrying everything the hub holds."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": text} for text in request.system]
    for item in request.items:
        if isinstance(item, ToolCall):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, ToolResult):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": text_of_parts(item.parts)})
        elif isinstance(item, Reasoning):
            continue  # another vendor's reasoning cannot be continued here
        elif item.role == "assistant":
            messages.append({"role": "assistant", "content": text_of_parts(item.parts)})
        else:
            messages.append({"role": "user", "content": [_part(part) for part in item.parts]})
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                            "stream_options": {"include_usage": True}}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": t.parameters, "strict": t.strict}}
                         for t in request.tools]
    if request.forced_tool:
        body["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
    elif request.tool_choice:
        body["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None and request.tools:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    optional = {"max_completion_tokens": request.max_output_tokens, "temperature": request.temperature,
                "top_p": request.top_p, "reasoning_effort": request.reasoning_effort, "user": request.user}
    body.update({name: value for name, value in optional.items() if value is not None})
    if request.stop:
        body["stop"] = request.stop
    output = request.output_format
    if output is not None and output.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif output is not None and output.kind == "json_schema":
        spec: dict[str, Any] = {"name": output.name, "schema": output.schema, "strict": output.strict}
        if output.description:
            spec["description"] = output.description
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    return body


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        image: dict[str, Any] = {"url": part.url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, File):
        return {"type": "file", "file": {"filename": part.filename, "file_data": part.data_url}}
    raise BadRequest("This content cannot be sent to an OpenAI-compatible upstream.")
