"""A fast local estimate of a Messages request's input tokens, for ``/v1/messages/count_tokens``.

Claude Code calls count_tokens dozens of times at start-up, so it is answered locally, without an
upstream call, for every provider but Anthropic itself (which counts exactly). The estimate:
- text (system, messages, tool results, tool inputs, tool definitions as JSON): one token per 4
  bytes of UTF-8, rounded up per piece — close to Anthropic's own rule of thumb for English prose
  (about 3.5 characters per token), so it errs slightly low for prose and high for dense code;
- a few tokens of framing per message and per tool;
- images by their pixel count as Anthropic documents it (width × height / 750, at most about 1,600
  after its downscaling), reading the size from the PNG, GIF or JPEG header; 1,600 when unknown.
It has not been compared with Anthropic's tokenizer (no network here); treat it as ±15 %.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

import orjson

from proxy.hub.checks import array

_PER_MESSAGE = 4
_PER_TOOL = 8
_IMAGE_DEFAULT = 1600


def count_input_tokens(body: dict[str, Any]) -> int:
    """The estimate; a 400 naming the field when ``messages`` or ``tools`` is not an array."""
    total = 0
    system = body.get("system")
    total += _content_tokens(system) if system is not None else 0
    messages = array(body.get("messages"), "messages")
    tools = array(body["tools"], "tools") if body.get("tools") is not None else ()
    for message in messages:
        if isinstance(message, dict):
            total += _PER_MESSAGE + _content_tokens(message.get("content"))
    for tool in tools:
        total += _PER_TOOL + _text_tokens(orjson.dumps(tool))
    return max(1, total)


def _text_tokens(data: str | bytes) -> int:
    size = len(data.encode("utf-8", "replace")) if isinstance(data, str) else len(data)
    return math.ceil(size / 4)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            total += _text_tokens(str(block.get("text", "")))
        elif kind == "image":
            total += image_tokens(block.get("source"))
        elif kind == "tool_use":
            total += _text_tokens(str(block.get("name", ""))) + _text_tokens(orjson.dumps(block.get("input", {})))
        elif kind == "tool_result":
            total += _content_tokens(block.get("content"))
        elif kind == "thinking":
            total += _text_tokens(str(block.get("thinking", "")))
        elif kind == "document":
            source = block.get("source") if isinstance(block.get("source"), dict) else {}
            total += _text_tokens(str(source.get("data", ""))) // 2  # base64 of a text/PDF: a rough bound
    return total


def image_tokens(source: Any) -> int:
    if not isinstance(source, dict) or source.get("type") != "base64":
        return _IMAGE_DEFAULT
    size = image_size(str(source.get("data", ""))[:4096])
    if size is None:
        return _IMAGE_DEFAULT
    width, height = size
    if width <= 0 or height <= 0:  # a 0×0 header says nothing about the image: count it as unknown
        return _IMAGE_DEFAULT
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / max(1, width * height)))
    return max(1, min(_IMAGE_DEFAULT, math.ceil(width * scale * height * scale / 750)))


def image_size(b64_head: str) -> tuple[int, int] | None:
    """(width, height) from the start of a base64 PNG, GIF or JPEG, or None."""
    head = b64_head[: len(b64_head) // 4 * 4]
    try:
        data = base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"\xff\xd8":
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                return None
            marker = data[index + 1]
            length = struct.unpack(">H", data[index + 2:index + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[index + 5:index + 9])
                return width, height
            index += 2 + length
    return None
