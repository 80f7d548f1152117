"""The Anthropic Messages request codec: validate a ``POST /v1/messages`` body and decode it into the hub.

Every field the proxy or an adapter reads is checked (a 400 naming the param otherwise). What only
Anthropic understands (server tools, documents by file id, citations…) is accepted as it is for the
Anthropic pass-through and refused with a 400 by a translating adapter. Thinking blocks that subrelay
made from a Codex reasoning item carry that item's payload in their signature and are replayed to
Codex; any other signature belongs to another vendor and is dropped.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.hub import checks
from proxy.hub.checks import required_model
from proxy.observe.redact import get_logger
from proxy.hub.model import (
    File,
    Image,
    Inbound,
    Message,
    ModelRequest,
    Part,
    Reasoning,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)

log = get_logger("subrelay.messages")

# A thinking block's signature that subrelay wrote: this prefix, then the Codex encrypted_content.
SIGNATURE_PREFIX = "subrelay.codex:"
# The attribution line Claude Code puts as the first system block. It changes per conversation (a
# fingerprint of the first prompt), so it is dropped when translating: kept, it would defeat the
# upstream's prompt cache and the derived prompt_cache_key. Claude Code tests for it the same way.
BILLING_LINE = "x-anthropic-billing-header:"
# Fields Anthropic reads that no translated upstream has: relayed to Anthropic as sent, else dropped.
ANTHROPIC_ONLY = ("context_management", "container", "mcp_servers", "service_tier")
# thinking.budget_tokens → reasoning effort (the Anthropic budgets subrelay itself uses, reversed).
_EFFORT_BANDS = ((2048, "low"), (12288, "medium"), (28672, "high"))


def parse_messages_request(body: dict[str, Any], raw: bytes) -> ModelRequest:
    model = required_model(body)
    request = ModelRequest(model=model, inbound=Inbound("messages", body, raw))
    request.max_output_tokens = checks.integer(body.get("max_tokens"), "max_tokens", minimum=1)
    system = body.get("system")
    if isinstance(system, str):
        if system:
            request.system.append(system)
    elif system is not None:
        request.system.append(_text_blocks(checks.array(system, "system"), "system"))
    messages = checks.array(body.get("messages"), "messages", non_empty=True)
    for index, message in enumerate(messages):
        _decode_message(message, f"messages[{index}]", request)
    _decode_tools(body, request)
    thinking = checks.opt_obj(body, "thinking")
    if thinking is not None:
        kind = checks.choice(thinking.get("type"), "thinking.type", ("enabled", "disabled", "adaptive"))
        if kind == "enabled":
            budget = checks.integer(thinking.get("budget_tokens"), "thinking.budget_tokens", minimum=1)
            request.reasoning_effort = next((effort for limit, effort in _EFFORT_BANDS if budget <= limit), "xhigh")
        elif kind == "disabled":
            request.reasoning_effort = "none"
    output_config = checks.opt_obj(body, "output_config")
    if output_config is not None and output_config.get("effort") is not None:
        # Claude Code's effort (low … max): the reasoning effort, clamped later to what the model lists.
        request.reasoning_effort = checks.string(output_config["effort"], "output_config.effort", non_empty=True,
                                                 max_length=32)
    dropped = [name for name in ANTHROPIC_ONLY if name in body]
    if dropped:
        log.debug("messages: %s relayed only to Anthropic; dropped when translated", ", ".join(dropped))
    request.temperature = checks.opt_number(body, "temperature", minimum=0, maximum=1)
    request.top_p = checks.opt_number(body, "top_p", minimum=0, maximum=1)
    checks.opt_integer(body, "top_k", minimum=0)
    stops = body.get("stop_sequences")
    if stops is not None:
        request.stop = [checks.string(s, f"stop_sequences[{i}]") for i, s in enumerate(checks.array(stops, "stop_sequences"))]
    request.stream = bool(checks.opt_boolean(body, "stream"))
    request.include_usage = True
    metadata = checks.opt_obj(body, "metadata")
    user = checks.opt_string(metadata, "user_id", "metadata.user_id", max_length=1024) if metadata else None
    request.user = user
    request.prompt_cache_key = conversation_cache_key(model, user, request)
    return request


def conversation_cache_key(model: str, user: str | None, request: ModelRequest) -> str:
    """A stable key per conversation (the user, the system prompt and the first user turn), so a
    Claude Code session hits the backend's prompt cache as it grows."""
    first = next((item for item in request.items if isinstance(item, Message) and item.role == "user"), None)
    digest = hashlib.sha256()
    for piece in (model, user or "", "\n".join(request.system)[:4096],
                  "".join(p.text for p in first.parts if isinstance(p, Text)) if first else ""):
        digest.update(piece.encode("utf-8", "replace"))
        digest.update(b"\0")
    return "msg-" + digest.hexdigest()[:40]


def _text_blocks(blocks: list[Any], where: str) -> str:
    texts = []
    for index, block in enumerate(blocks):
        checks.obj(block, f"{where}[{index}]")
        if block.get("type") == "text":
            text = checks.string(block.get("text"), f"{where}[{index}].text")
            if not text.startswith(BILLING_LINE):
                texts.append(text)
    return "\n\n".join(texts)


def _decode_message(message: Any, where: str, request: ModelRequest) -> None:
    checks.obj(message, where)
    role = checks.choice(message.get("role"), f"{where}.role", ("user", "assistant", "system"))
    content = message.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    else:
        blocks = checks.array(content, f"{where}.content")
    if role == "system":  # Claude Code puts system turns mid-conversation
        text = _text_blocks(blocks, f"{where}.content")
        if text:
            request.system.append(text)
        return
    parts: list[Part] = []

    def flush() -> None:
        if parts:
            request.items.append(Message(role, list(parts)))
            parts.clear()

    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        checks.obj(block, at)
        kind = checks.string(block.get("type"), f"{at}.type")
        if kind == "text":
            text = checks.string(block.get("text"), f"{at}.text")
            if text:
                parts.append(Text(text))
        elif kind in ("image", "document"):
            part = _media(block, at, request)
            if part is not None:
                parts.append(part)
        elif kind == "tool_use":
            flush()
            call_id = checks.string(block.get("id"), f"{at}.id", non_empty=True, max_length=512)
            name = checks.string(block.get("name"), f"{at}.name", non_empty=True, max_length=256)
            arguments = orjson.dumps(checks.obj(block.get("input", {}), f"{at}.input")).decode()
            request.items.append(ToolCall(call_id, name, arguments, where=at))
        elif kind == "tool_result":
            flush()
            call_id = checks.string(block.get("tool_use_id"), f"{at}.tool_use_id", non_empty=True, max_length=512)
            result = block.get("content")
            if result is None or isinstance(result, str):
                result_parts: list[Part] = [Text(result or "")]
            else:
                result_parts = []
                for position, item in enumerate(checks.array(result, f"{at}.content")):
                    item_at = f"{at}.content[{position}]"
                    checks.obj(item, item_at)
                    if item.get("type") == "text":
                        result_parts.append(Text(checks.string(item.get("text"), f"{item_at}.text")))
                    elif item.get("type") in ("image", "document"):
                        media = _media(item, item_at, request)
                        if media is not None:
                            result_parts.append(media)
                    else:
                        request.untranslatable.append((f"{item_at}.type", f"tool results holding {item.get('type')!r:.40}"))
            request.items.append(ToolResult(call_id, result_parts or [Text("")],
                                            bool(checks.opt_boolean(block, "is_error", f"{at}.is_error")), where=at))
        elif kind == "thinking":
            flush()
            thinking = checks.string(block.get("thinking", ""), f"{at}.thinking")
            signature = checks.opt_string(block, "signature", f"{at}.signature") or ""
            # Only a signature subrelay wrote can be continued (by Codex); others are another vendor's.
            encrypted = signature[len(SIGNATURE_PREFIX):] if signature.startswith(SIGNATURE_PREFIX) else None
            request.items.append(Reasoning([thinking] if thinking else [], encrypted))
        elif kind == "redacted_thinking":
            continue  # Anthropic's own encrypted reasoning: meaningless to any other vendor
        else:
            request.untranslatable.append((f"{at}.type", f"content blocks of type {kind!r:.40}"))
    flush()


def _media(block: dict[str, Any], at: str, request: ModelRequest) -> Part | None:
    source = checks.obj(block.get("source"), f"{at}.source")
    kind = checks.string(source.get("type"), f"{at}.source.type")
    if kind == "base64":
        media = checks.string(source.get("media_type"), f"{at}.source.media_type", max_length=128)
        data = checks.string(source.get("data"), f"{at}.source.data", non_empty=True)
        url = f"data:{media};base64,{data}"
        return Image(url) if block["type"] == "image" else File(url, checks.opt_string(block, "title") or "document")
    if kind == "url" and block["type"] == "image":
        url = checks.string(source.get("url"), f"{at}.source.url", non_empty=True)
        if not url.startswith(("https://", "http://")):
            raise BadRequest("An image URL must be http(s).", param=f"{at}.source.url")
        return Image(url)
    request.untranslatable.append((f"{at}.source.type", f"{block['type']} sources of type {kind!r:.40}"))
    return None


def _decode_tools(body: dict[str, Any], request: ModelRequest) -> None:
    tools = body.get("tools")
    for index, tool in enumerate(checks.array(tools, "tools") if tools is not None else ()):
        where = f"tools[{index}]"
        checks.obj(tool, where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            request.untranslatable.append((f"{where}.type", f"server tools ({str(kind)[:40]})"))
            continue
        name = checks.string(tool.get("name"), f"{where}.name", non_empty=True, max_length=256)
        schema = checks.opt_obj(tool, "input_schema", f"{where}.input_schema") or {"type": "object", "properties": {}}
        request.tools.append(Tool(name, checks.opt_string(tool, "description", f"{where}.description") or "", schema))
    choice = checks.opt_obj(body, "tool_choice")
    if choice is None:
        return
    kind = checks.choice(choice.get("type"), "tool_choice.type", ("auto", "any", "tool", "none"))
    if kind == "tool":
        request.forced_tool = checks.string(choice.get("name"), "tool_choice.name", non_empty=True)
    else:
        request.tool_choice = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if checks.opt_boolean(choice, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use"):
        request.parallel_tool_calls = False
