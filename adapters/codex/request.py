"""Chat Completions request → Codex Responses request body (pure).

The Codex backend speaks the Responses API with a few rules of its own (fact sheet §4): it always
streams, never stores, needs non-empty ``instructions``, takes flat function tools, and rejects
sampling parameters the Codex CLI never sends. Parameters it would refuse are dropped here (see
:data:`DROPPED_PARAMETERS`) so that they never cause an upstream 400.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from proxy.chat import REASONING_EFFORTS, ChatRequest, response_format_of, text_of
from proxy.errors import BadRequest

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
    chat: ChatRequest,
    upstream_model: str,
    default_instructions: str,
    instructions_mode: str = INSTRUCTIONS_CLIENT,
) -> dict[str, Any]:
    """Build the JSON body for ``POST {base}/responses``."""
    model, suffix_effort = split_effort_suffix(upstream_model)
    system_text, input_items = to_responses_input(chat.messages)
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
    raw = chat.body
    tools = raw.get("tools")
    if tools:
        body["tools"] = [_to_flat_tool(tool) for tool in tools]
        body["tool_choice"] = _to_tool_choice(raw.get("tool_choice", "auto"))
        body["parallel_tool_calls"] = bool(raw.get("parallel_tool_calls", True))
    elif raw.get("tool_choice") not in (None, "none", "auto"):
        raise BadRequest("'tool_choice' needs 'tools'.", param="tool_choice")

    effort = _reasoning_effort(raw) or suffix_effort
    reasoning: dict[str, Any] = {"summary": "auto"}
    if effort:
        reasoning["effort"] = effort
    body["reasoning"] = reasoning
    body["include"] = ["reasoning.encrypted_content"]

    text_format = _to_text_format(raw.get("response_format"))
    if text_format is not None:
        body["text"] = {"format": text_format}

    cache_key = raw.get("prompt_cache_key")
    body["prompt_cache_key"] = header_safe_key(cache_key) if isinstance(cache_key, str) and cache_key else (
        conversation_key(model, instructions, input_items))
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
    first_user = next((item for item in input_items if item.get("role") == "user"), None)
    digest = hashlib.sha256()
    digest.update(model.encode())
    digest.update(b"\0")
    digest.update(instructions.encode())
    digest.update(b"\0")
    if first_user is not None:
        for part in first_user["content"]:
            digest.update(str(part.get("text") or part.get("image_url") or "").encode())
    hexed = digest.hexdigest()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:32]}"


def to_responses_input(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Split chat messages into (instructions text, Responses ``input`` items)."""
    system_parts: list[str] = []
    items: list[dict[str, Any]] = []
    known_calls: set[str] = set()
    for position, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system_parts.append(text)
        elif role == "user":
            items.append(_message("user", _user_parts(position, content)))
        elif role == "assistant":
            text = text_of(content) if not isinstance(content, list) else _assistant_text(content)
            if text:
                items.append(_message("assistant", [{"type": "output_text", "text": text}]))
            for call in message.get("tool_calls") or ():
                items.append(_function_call(position, call))
                known_calls.add(items[-1]["call_id"])
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id") or message.get("name")
            if call_id not in known_calls:
                raise BadRequest(
                    f"messages[{position}] answers tool call {call_id!r}, but no earlier assistant message "
                    "made that call.",
                    param=f"messages[{position}].tool_call_id",
                    code="invalid_tool_call_id",
                )
            items.append({"type": "function_call_output", "call_id": call_id, "output": text_of(content)})
    return "\n\n".join(system_parts), items


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _assistant_text(parts: list[dict[str, Any]]) -> str:
    return "".join(part.get("text") or part.get("refusal") or "" for part in parts)


def _user_parts(position: int, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part["type"]
        where = f"messages[{position}].content[{index}]"
        if kind in ("text", "input_text"):
            parts.append({"type": "input_text", "text": part.get("text", "")})
        elif kind == "image_url":
            parts.append(_input_image(where, part.get("image_url")))
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise BadRequest("Only inline files ('file_data') are supported.", param=f"{where}.file")
            parts.append({"type": "input_file", "filename": file.get("filename", "file"), "file_data": file["file_data"]})
        else:
            raise BadRequest(f"Content parts of type {kind!r} are not supported by Codex models.", param=where)
    return parts


def _input_image(where: str, image: Any) -> dict[str, Any]:
    url, detail = (image.get("url"), image.get("detail")) if isinstance(image, dict) else (image, None)
    if not isinstance(url, str) or not url.startswith(("data:image/", "https://", "http://")):
        raise BadRequest(
            "'image_url.url' must be an https URL or a data:image/... base64 URL.", param=f"{where}.image_url"
        )
    if url.startswith("data:"):
        url = _normalise_data_url(url)
    part: dict[str, Any] = {"type": "input_image", "image_url": url}
    if detail in ("auto", "low", "high"):
        part["detail"] = detail
    return part


def _normalise_data_url(url: str) -> str:
    """Fix the two defects clients commonly send: the URL-safe alphabet and missing padding."""
    header, sep, data = url.partition(",")
    if not sep or ";base64" not in header:
        return url
    if "-" in data or "_" in data:
        data = data.replace("-", "+").replace("_", "/")
    if len(data) % 4:
        data += "=" * (-len(data) % 4)
    return f"{header},{data}"


def _function_call(position: int, call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name") or not call.get("id"):
        raise BadRequest(
            "Each assistant tool call needs an 'id' and 'function.name'.", param=f"messages[{position}].tool_calls"
        )
    arguments = function.get("arguments")
    return {
        "type": "function_call",
        "call_id": call["id"],
        "name": function["name"],
        "arguments": arguments if isinstance(arguments, str) else "{}",
    }


def _to_flat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    flat: dict[str, Any] = {
        "type": "function",
        "name": function["name"],
        "description": function.get("description") or "",
        "strict": bool(function.get("strict", False)),
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
    }
    return flat


def _to_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "name": name}
    raise BadRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )


def _reasoning_effort(raw: dict[str, Any]) -> str | None:
    effort = raw.get("reasoning_effort")
    param = "reasoning_effort"
    if effort is None and isinstance(raw.get("reasoning"), dict):
        effort, param = raw["reasoning"].get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        raise BadRequest(
            f"'{param}' must be one of {', '.join(REASONING_EFFORTS)}; got {effort!r}.", param=param
        )
    return effort


def _to_text_format(response_format: Any) -> dict[str, Any] | None:
    kind, spec = response_format_of(response_format)
    if kind == "text":
        return None
    if spec is None:
        return {"type": "json_object"}
    text_format: dict[str, Any] = {
        "type": "json_schema",
        "name": spec.get("name") or "response",
        "schema": spec["schema"],
        "strict": bool(spec.get("strict", False)),
    }
    if spec.get("description"):
        text_format["description"] = spec["description"]
    return text_format
