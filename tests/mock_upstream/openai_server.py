"""A mock OpenAI-compatible Chat Completions upstream (OpenAI, OpenRouter, vLLM…), loopback only.

Answers JSON or SSE with deterministic ids so a relayed stream can be compared byte for byte, checks
the bearer key, refuses non-alternating turns when ``require_alternation`` is set (as Perplexity
does), and takes canned error answers from ``state.script``. A bare ASGI app: cheap enough to be the
benchmark upstream too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import plain_answers
from .asgi import answers_400_when_confused, lifespan, read_body, send_json
from .codex_script import _sample


@dataclass
class OpenAIMockState:
    api_key: str = "sk-or-v1-" + "a1b2c3d4" * 8
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[dict[str, Any]] = field(default_factory=list)
    require_alternation: bool = False
    delta_count: int = 3
    delta_text: str = "hello "
    inter_delta_delay: float = 0.0
    record: bool = True


def tool_call_chunks(model: str, name: str, arguments: str, include_usage: bool) -> list[bytes]:
    """A streamed tool call as OpenAI sends it: id and name first, then the arguments in pieces."""
    head = b'{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":' + orjson.dumps(model)
    first = {"index": 0, "id": "call_mock1", "type": "function", "function": {"name": name, "arguments": ""}}
    frames = [b"data: " + head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":['
              + orjson.dumps(first) + b']},"finish_reason":null}]}\n\n']
    for start in range(0, len(arguments), 6):
        piece = {"index": 0, "function": {"arguments": arguments[start:start + 6]}}
        frames.append(b"data: " + head + b',"choices":[{"index":0,"delta":{"tool_calls":[' + orjson.dumps(piece)
                      + b']},"finish_reason":null}]}\n\n')
    frames.append(b"data: " + head + b',"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n')
    if include_usage:
        frames.append(b"data: " + head + b',"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}\n\n')
    frames.append(b"data: [DONE]\n\n")
    return frames


def completion_chunks(model: str, count: int, text: str, include_usage: bool) -> list[bytes]:
    head = b'{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":' + orjson.dumps(model)
    frames = [b"data: " + head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
    piece = orjson.dumps(text)
    for _ in range(count):
        frames.append(b"data: " + head + b',"choices":[{"index":0,"delta":{"content":' + piece + b'},"finish_reason":null}]}\n\n')
    frames.append(b"data: " + head + b',"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    if include_usage:
        frames.append(b"data: " + head + b',"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":' +
                      str(count).encode() + b',"total_tokens":' + str(5 + count).encode() + b"}}\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames


class MockOpenAIServer:
    def __init__(self, state: OpenAIMockState | None = None) -> None:
        self.state = state or OpenAIMockState()

    @answers_400_when_confused
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = await read_body(receive)
        s = self.state
        if scope["path"].endswith(plain_answers.PATHS):
            await self._plain(scope, send, body)
            return
        if not scope["path"].endswith("/chat/completions"):
            await send_json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        headers = dict(scope["headers"])
        request = orjson.loads(body)
        if s.record:
            s.requests.append({"headers": {k.decode(): v.decode() for k, v in headers.items()}, "body": request,
                               "raw": body, "path": scope["path"]})
        if await self._refused(send, headers.get(b"authorization", b"").decode()):
            return
        if s.require_alternation:
            roles = [m["role"] for m in request["messages"] if m["role"] != "system"]
            if any(a == b for a, b in zip(roles, roles[1:])):
                await send_json(send, 400, {"error": {"message": "After the (optional) system message(s), user and assistant "
                            "roles should be alternating.", "type": "invalid_message", "code": 400}})
                return
        model = request["model"]
        messages = request["messages"]
        tools = request.get("tools") or []
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        if request.get("stream") and (tools and messages[-1]["role"] != "tool" or messages[-1]["role"] == "tool"):
            if messages[-1]["role"] == "tool":  # answer with what the tool said
                frames = completion_chunks(model, 1, f"The tool said: {messages[-1]['content']}", include_usage)
            else:
                function = tools[0]["function"]
                arguments = orjson.dumps(_sample(function.get("parameters") or {}, "", 0)).decode()
                frames = tool_call_chunks(model, function["name"], arguments, include_usage)
            await _send_stream(send, frames, s.inter_delta_delay)
            return
        if not request.get("stream"):
            await send_json(send, 200, {"id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000,
                                    "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": s.delta_text * s.delta_count}}],
                                    "usage": {"prompt_tokens": 5, "completion_tokens": s.delta_count,
                                              "total_tokens": 5 + s.delta_count}})
            return
        await _send_stream(send, completion_chunks(model, s.delta_count, s.delta_text, include_usage), s.inter_delta_delay)


    async def _refused(self, send, authorization: str) -> bool:
        """Answered already: a wrong key (401), or the next canned answer of ``state.script``."""
        s = self.state
        if authorization != f"Bearer {s.api_key}":
            await send_json(send, 401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                              "code": "invalid_api_key"}})
            return True
        if s.script:
            canned = s.script.pop(0)
            await send_json(send, canned["status"], canned.get("body", {}), canned.get("headers"))
            return True
        return False

    async def _plain(self, scope, send, body: bytes) -> None:
        """Embeddings, moderations, images, transcriptions (:mod:`.plain_answers`), behind the same key check
        and canned errors as Chat."""
        s = self.state
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if await self._refused(send, headers.get("authorization", "")):
            return
        status, media, payload, asked = plain_answers.answer(scope["path"], headers.get("content-type", ""), body)
        if s.record:
            s.requests.append({"headers": headers, "body": asked, "raw": body, "path": scope["path"]})
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


async def _send_stream(send, frames: list[bytes], delay: float) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for frame in frames:
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})

