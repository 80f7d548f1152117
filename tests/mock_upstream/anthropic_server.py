"""A mock Anthropic Messages API (streaming), loopback only; follows vendors.md §A.6."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .asgi import answers_400_when_confused, lifespan, read_body, send_json

from .codex_script import _sample


@dataclass
class AnthropicMockState:
    api_key: str = "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[dict[str, Any]] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: list(MODELS))  # what GET /v1/models lists, newest first
    models_page_size: int = 1000  # the API's own maximum; tests lower it to exercise paging
    models_down: bool = False
    model_list_calls: int = 0


MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-sonnet-4-5",
          "claude-lumen-9")  # the last: no shipped list knows it


_MARKERS = re.compile(r"\[\[[^\]]*\]\]")


def _frame(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


def message_stream(body: dict[str, Any]) -> list[bytes]:
    last = body["messages"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
    text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    images = sum(1 for b in blocks if b.get("type") == "image")
    tool_results = [b for b in blocks if b.get("type") == "tool_result"]
    frames = [_frame("message_start", {"message": {"id": "msg_mock", "type": "message", "role": "assistant",
                     "model": body["model"], "content": [], "usage": {"input_tokens": 30, "cache_read_input_tokens": 10,
                     "cache_creation_input_tokens": 0, "output_tokens": 1}}})]
    index = 0
    if body.get("thinking"):
        frames += [_frame("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
                   _frame("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Considering."}}),
                   _frame("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}}),
                   _frame("content_block_stop", {"index": 0})]
        index = 1
    tools = {t["name"]: t for t in body.get("tools") or []}
    choice = body.get("tool_choice") or {}
    calls = []
    if choice.get("type") == "tool":
        calls = [tools[choice["name"]]]
    elif tools and choice.get("type") != "none" and not tool_results:
        wanted = 2 if "[[parallel]]" in text else 1
        calls = [list(tools.values())[n % len(tools)] for n in range(wanted)]
    if calls:
        for n, tool in enumerate(calls):
            args = orjson.dumps(_sample(tool["input_schema"], text, n)).decode()
            frames += [_frame("content_block_start", {"index": index, "content_block": {"type": "tool_use",
                              "id": f"toolu_mock{n + 1}", "name": tool["name"], "input": {}}}),
                       _frame("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": args[:6]}}),
                       _frame("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": args[6:]}}),
                       _frame("content_block_stop", {"index": index})]
            index += 1
        stop = "tool_use"
    else:
        if tool_results:
            answer = f"The tool said: {tool_results[-1]['content']}"
        elif images:
            answer = f"I see {images} image(s). You said: {text}"
        else:
            answer = "Hello! You said: " + _MARKERS.sub("", text).strip()
        frames.append(_frame("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
        for start in range(0, len(answer), 8):
            frames.append(_frame("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": answer[start:start + 8]}}))
        frames.append(_frame("content_block_stop", {"index": index}))
        stop = "end_turn"
    frames += [_frame("ping", {}),
               _frame("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 12}}),
               _frame("message_stop", {})]
    return frames


def message_from_frames(frames: list[bytes]) -> dict[str, Any]:
    """The non-streaming answer the same stream adds up to."""
    message: dict[str, Any] = {}
    for frame in frames:
        event = orjson.loads(frame.split(b"\ndata: ", 1)[1])
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "content": []}
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                block["_json"] = block.get("_json", "") + delta["partial_json"]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
    for block in message["content"]:
        if "_json" in block:
            block["input"] = orjson.loads(block.pop("_json"))
    return message


class MockAnthropicServer:
    def __init__(self, state: AnthropicMockState | None = None) -> None:
        self.state = state or AnthropicMockState()

    @answers_400_when_confused
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        raw = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        s = self.state
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            await self._models(scope, headers, send)
            return
        body = orjson.loads(raw) if raw else {}
        s.requests.append({"headers": headers, "body": body, "path": scope["path"]})
        if headers.get("x-api-key") != s.api_key:
            await send_json(send, 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return
        if not re.fullmatch(r"20\d\d-\d\d-\d\d", headers.get("anthropic-version", "")) or "max_tokens" not in body:
            await send_json(send, 400, {"type": "error", "error": {"type": "invalid_request_error",
                                    "message": "anthropic-version header and max_tokens are required"}})
            return
        if s.script:
            canned = s.script.pop(0)
            await send_json(send, canned["status"], canned.get("body", {}), canned.get("headers"))
            return
        frames = message_stream(body)
        if body.get("stream") is not True:  # the API answers one Message object when not streaming
            await send_json(send, 200, message_from_frames(frames))
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for frame in frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _models(self, scope, headers: dict[str, str], send) -> None:
        """``GET /v1/models``: the key's models, newest first, paged by ``limit`` and ``after_id``."""
        s = self.state
        s.model_list_calls += 1
        if headers.get("x-api-key") != s.api_key:
            await send_json(send, 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return
        if s.models_down:
            await send_json(send, 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        query = dict(part.split("=", 1) for part in scope.get("query_string", b"").decode().split("&") if "=" in part)
        limit = min(int(query.get("limit", "20")), s.models_page_size)
        start = s.models.index(query["after_id"]) + 1 if query.get("after_id") in s.models else 0
        page = s.models[start:start + limit]
        await send_json(send, 200, {
            "data": [{"type": "model", "id": model, "display_name": model, "created_at": "2026-01-01T00:00:00Z"}
                     for model in page],
            "has_more": start + limit < len(s.models), "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None})
