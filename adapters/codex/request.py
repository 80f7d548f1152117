"""The hub's request → Codex Responses request body (pure).

The Codex backend speaks the Responses API with a few rules of its own (fact sheet §4): it always
streams, never stores, needs non-empty ``instructions``, takes flat function tools, and rejects
sampling parameters the Codex CLI never sends. Parameters it would refuse are dropped here (see
:data:`DROPPED_PARAMETERS`) so that they never cause an upstream 400.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from proxy.errors import BadRequest
from proxy.hub.checks import REASONING_EFFORTS
from proxy.hub.model import (
    Image,
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
    text_of_parts,
)

# Accepted by Chat Completions, refused or meaningless on the Codex backend: dropped silently.
DROPPED_PARAMETERS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "stop", "user", "n",
    "metadata", "service_tier", "modalities", "audio", "prediction", "web_search_options",
)

INSTRUCTIONS_CLIENT = "client"  # the client's system text is the instructions
INSTRUCTIONS_DEFAULT = "default"  # default instructions; client system text as a developer message


def split_effort_suffix(model: str) -> tuple[str, str | None]:
    """``gpt-5.1-codex-high`` → (``gpt-5.1-codex``, ``high``); other names are left alone."""
    base, sep, suffix = model.rpartition("-")
    if sep and base and suffix in REASONING_EFFORTS and suffix != "none":
        return base, suffix
    return model, None


def to_responses_body(
    request: ModelRequest,
    upstream_model: str,
    default_instructions: str,
    instructions_mode: str = INSTRUCTIONS_CLIENT,
) -> dict[str, Any]:
    """Build the JSON body for ``POST {base}/responses`` from the hub's request."""
    model, suffix_effort = split_effort_suffix(upstream_model)
    system_text = "\n\n".join(request.system)
    input_items = to_responses_input(request.items)
    if instructions_mode == INSTRUCTIONS_CLIENT and system_text:
        instructions = system_text
    else:
        instructions = default_instructions
        if system_text:
            input_items.insert(0, _message("developer", [{"type": "input_text", "text": system_text}]))

    body: dict[str, Any] = {
        "model": model,
        "instructions": instructions,
        "input": input_items,
        "stream": True,
        "store": False,
    }
    if request.tools:
        body["tools"] = [_flat_tool(tool) for tool in request.tools]
        body["tool_choice"] = ({"type": "function", "name": codex_name(request.forced_tool)} if request.forced_tool
                               else request.tool_choice or "auto")
        body["parallel_tool_calls"] = request.parallel_tool_calls is not False
    elif request.forced_tool or request.tool_choice == "required":
        raise BadRequest("'tool_choice' needs 'tools'.", param="tool_choice")

    reasoning: dict[str, Any] = {"summary": request.reasoning_summary or "auto"}
    effort = request.reasoning_effort or suffix_effort
    if effort:
        reasoning["effort"] = effort
    body["reasoning"] = reasoning
    body["include"] = ["reasoning.encrypted_content"]

    text_format = _text_format(request.output_format)
    if text_format is not None:
        body["text"] = {"format": text_format}

    key = request.prompt_cache_key
    body["prompt_cache_key"] = header_safe_key(key) if key else conversation_key(model, instructions, input_items)
    return body


_HEADER_SAFE = re.compile(r"[A-Za-z0-9._:@=+/-]{1,200}")


def header_safe_key(key: str) -> str:
    """The client's ``prompt_cache_key`` as it can travel in the ``session_id`` header: kept when it is
    plain, else replaced by a stable digest of it (same key in, same key out, so caching still works)."""
    if _HEADER_SAFE.fullmatch(key):
        return key
    return "k-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def conversation_key(model: str, instructions: str, input_items: list[dict[str, Any]]) -> str:
    """A stable id for a conversation: the same model, instructions and first user turn give the
    same key on every request, so the backend's prompt cache can hit as the conversation grows."""
    first_user = next((item for item in input_items if isinstance(item, dict) and item.get("role") == "user"), None)
    digest = hashlib.sha256()
    digest.update(model.encode())
    digest.update(b"\0")
    digest.update(instructions.encode())
    digest.update(b"\0")
    content = first_user.get("content") if first_user is not None else None
    if isinstance(content, str):
        digest.update(content.encode())
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                digest.update(str(part.get("text") or part.get("image_url") or "").encode())
    hexed = digest.hexdigest()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:32]}"


def to_responses_input(items: list[Item]) -> list[dict[str, Any]]:
    """The hub's conversation items as Responses ``input`` items."""
    converted: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Message):
            if item.role == "assistant":
                text = text_of_parts(item.parts)
                if text:
                    converted.append(_message("assistant", [{"type": "output_text", "text": text}]))
            else:
                converted.append(_message("user", [_input_part(part) for part in item.parts]))
        elif isinstance(item, ToolCall):
            converted.append({"type": "function_call", "call_id": codex_id(item.call_id), "name": codex_name(item.name),
                              "arguments": item.arguments})
        elif isinstance(item, ToolResult):
            converted.append({"type": "function_call_output", "call_id": codex_id(item.call_id),
                              "output": _tool_output(item)})
        elif isinstance(item, Reasoning) and item.encrypted:
            # Only a Codex-made reasoning item (with its encrypted payload) can be continued.
            converted.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": text}
                                                               for text in item.summary],
                              "encrypted_content": item.encrypted})
    return converted


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _input_part(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, Image):
        image: dict[str, Any] = {"type": "input_image", "image_url": normalise_data_url(part.url)
                                 if part.url.startswith("data:") else part.url}
        if part.detail:
            image["detail"] = part.detail
        return image
    return {"type": "input_file", "filename": part.filename, "file_data": part.data_url}


def _tool_output(result: ToolResult) -> Any:
    if all(isinstance(part, Text) for part in result.parts):
        return text_of_parts(result.parts)
    return [_input_part(part) for part in result.parts]


def normalise_data_url(url: str) -> str:
    """Fix the two defects clients commonly send: the URL-safe alphabet and missing padding."""
    header, sep, data = url.partition(",")
    if not sep or ";base64" not in header:
        return url
    if "-" in data or "_" in data:
        data = data.replace("-", "+").replace("_", "/")
    if len(data) % 4:
        data += "=" * (-len(data) % 4)
    return f"{header},{data}"


MAX_NAME = 64  # the backend refuses longer tool names and ids (openai/codex#39133)


def codex_name(name: str) -> str:
    """A tool name the backend accepts: unchanged up to 64 characters, else a stable shortening
    (mapped back by :func:`name_map` on the way out)."""
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:MAX_NAME - 17]}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def codex_id(value: str) -> str:
    if len(value) <= MAX_NAME:
        return value
    return f"id_{hashlib.sha256(value.encode()).hexdigest()[:48]}"


def name_map(tools: list[Tool]) -> dict[str, str]:
    """Shortened name → the client's name, for the tools that needed shortening."""
    return {codex_name(tool.name): tool.name for tool in tools if len(tool.name) > MAX_NAME}


def _flat_tool(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "name": codex_name(tool.name), "description": tool.description, "strict": tool.strict,
            "parameters": tool.parameters}


def _text_format(output: OutputFormat | None) -> dict[str, Any] | None:
    if output is None or output.kind == "text":
        return None
    if output.kind == "json_object":
        return {"type": "json_object"}
    text_format: dict[str, Any] = {"type": "json_schema", "name": output.name, "schema": output.schema,
                                   "strict": output.strict}
    if output.description:
        text_format["description"] = output.description
    return text_format
