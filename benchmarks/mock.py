"""The benchmark upstream: OpenAI Chat Completions (JSON and SSE), Codex Responses SSE and Anthropic
Messages SSE, fast.

Every answer is built once at start-up and replayed from bytes, so the mock costs almost nothing
per request (``run.py`` measures it alone to prove it is not the bottleneck). The Codex stream
follows the fact sheet, quirk included: ``response.completed`` carries an empty ``output`` unless
``--full-output`` (LiteLLM's non-stream ``chatgpt/`` path needs the items there).

    python -m benchmarks.mock --port 8901 --deltas 200 --delta-size 8 --delay 0
"""

from __future__ import annotations

import argparse
import asyncio

import orjson


def delta_texts(deltas: int, size: int) -> list[str]:
    """``deltas`` distinct pieces of ``size`` characters (``t0000000``, ``t0000001``, …). Distinct
    because a real model does not repeat itself, and LiteLLM cuts a stream after 100 identical
    chunks ("The model is repeating the same chunk")."""
    return ["t" + str(i).zfill(max(size - 1, 1)) for i in range(deltas)]


def openai_json(deltas: int, size: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "".join(delta_texts(deltas, size))}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": deltas, "total_tokens": 10 + deltas},
    })


def openai_sse(deltas: int, size: int) -> list[bytes]:
    head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[{"index":0,"delta":'
    frames = [head + b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
    frames += [head + b'{"content":' + orjson.dumps(piece) + b'},"finish_reason":null}]}\n\n' for piece in delta_texts(deltas, size)]
    frames.append(head + b'{},"finish_reason":"stop"}]}\n\n')
    frames.append(b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model",'
                  b'"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":' + str(deltas).encode() + b',"total_tokens":'
                  + str(10 + deltas).encode() + b'}}\n\n')
    frames.append(b"data: [DONE]\n\n")
    return frames


def codex_sse(deltas: int, size: int, full_output: bool) -> list[bytes]:
    def frame(kind: str, payload: dict) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"

    pieces = delta_texts(deltas, size)
    text = "".join(pieces)
    item = {"type": "message", "id": "msg_b", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    frames = [frame("response.created", {"response": {"id": "resp_b", "status": "in_progress", "output": []}}),
              frame("response.output_item.added", {"output_index": 0, "item": {**item, "content": [], "status": "in_progress"}}),
              frame("response.content_part.added", {"item_id": "msg_b", "output_index": 0, "content_index": 0,
                                                    "part": {"type": "output_text", "text": ""}})]
    frames += [frame("response.output_text.delta", {"item_id": "msg_b", "output_index": 0, "content_index": 0, "delta": piece})
               for piece in pieces]
    frames += [frame("response.output_text.done", {"item_id": "msg_b", "output_index": 0, "content_index": 0, "text": text}),
               frame("response.output_item.done", {"output_index": 0, "item": item}),
               frame("response.completed", {"response": {"id": "resp_b", "status": "completed",
                     "output": [item] if full_output else [],
                     "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": deltas,
                               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10 + deltas}}})]
    return frames


def anthropic_sse(deltas: int, size: int) -> list[bytes]:
    """An Anthropic Messages stream: message_start, one text block of ``deltas`` deltas, the end."""
    def frame(kind: str, payload: dict) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"

    frames = [frame("message_start", {"message": {"id": "msg_bench", "type": "message", "role": "assistant",
                    "model": "bench", "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1}}}),
              frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
    frames += [frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
               for piece in delta_texts(deltas, size)]
    frames += [frame("content_block_stop", {"index": 0}),
               frame("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                       "usage": {"output_tokens": deltas}}),
               frame("message_stop", {})]
    return frames


class BenchUpstream:
    """The ASGI app; ``path`` picks the wire format, the request's ``stream`` flag JSON vs SSE, and a
    ``-d<N>`` suffix on the model name the number of deltas (``bench-d1``, ``codex/bench-d200``)."""

    def __init__(self, deltas: int, size: int, delay: float, full_output: bool) -> None:
        self.delay = delay
        self.default_deltas = deltas
        self.size = size
        self.full_output = full_output
        self._answers: dict[int, tuple[bytes, list[tuple[bytes, bytes]], list[bytes], list[bytes]]] = {}
        self._anthropic: dict[int, list[bytes]] = {}

    def answers(self, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], list[bytes], list[bytes]]:
        model = orjson.loads(body).get("model", "") if body else ""
        _, sep, suffix = model.rpartition("-d")
        deltas = int(suffix) if sep and suffix.isdigit() else self.default_deltas
        cached = self._answers.get(deltas)
        if cached is None:
            json_body = openai_json(deltas, self.size)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(json_body)).encode())]
            cached = (json_body, headers, openai_sse(deltas, self.size), codex_sse(deltas, self.size, self.full_output))
            self._answers[deltas] = cached
        return cached

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET":
            await self._get(path, send)
            return
        if path == "/v1/traces":  # an OTLP collector that takes every batch (the tracing A/B exports here)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-protobuf")]})
            await send({"type": "http.response.body", "body": b""})
            return
        json_body, json_headers, openai_frames, codex_frames = self.answers(body)
        if path.endswith("/responses"):
            frames = codex_frames
        elif path.endswith("/v1/messages"):
            frames = self._anthropic.setdefault(len(openai_frames), anthropic_sse(len(openai_frames) - 3, self.size))
        elif b'"stream":true' in body.replace(b" ", b""):
            frames = openai_frames
        elif path.endswith("/chat/completions"):
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": json_body})
            return
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        delay = self.delay
        for frame in frames:
            if delay:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


    async def _get(self, path: str, send) -> None:
        """The account reads a Codex-account proxy makes besides answering: the plan's usage
        windows and the model catalogue (the bench slugs; peers such as codex-lb route by it)."""
        if path.endswith("/wham/usage"):
            body = USAGE
        elif path.endswith("/codex/models"):
            body = CATALOGUE
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


USAGE = orjson.dumps({"plan_type": "pro", "rate_limit": {
    "allowed": True, "limit_reached": False,
    "primary_window": {"used_percent": 1, "limit_window_seconds": 18000, "reset_after_seconds": 18000, "reset_at": 4102444800},
    "secondary_window": {"used_percent": 1, "limit_window_seconds": 604800, "reset_after_seconds": 604800, "reset_at": 4102444800}},
    "credits": {"has_credits": False, "unlimited": False, "balance": "0"}})
CATALOGUE = orjson.dumps({"models": [
    {"slug": slug, "display_name": slug, "visibility": "list", "priority": n, "supported_in_api": True}
    for n, slug in enumerate(("bench-d1", "bench-d50", "bench-d200", "gpt-5.5"))]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--delta-size", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between SSE frames")
    parser.add_argument("--full-output", action="store_true", help="fill response.completed.output")
    args = parser.parse_args()
    import uvicorn

    app = BenchUpstream(args.deltas, args.delta_size, args.delay, args.full_output)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
