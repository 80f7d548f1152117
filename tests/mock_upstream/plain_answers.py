"""The plain OpenAI endpoints as the mock OpenAI-compatible upstream answers them, in the real API's shapes:
``/embeddings`` (float or base64 vectors, ``usage.prompt_tokens``), ``/moderations``, ``/images/generations``
(``usage`` only for gpt-image models, as OpenAI does) and ``/audio/transcriptions`` (a form read with the
standard library's own MIME parser, so subrelay's form codec is checked by another one)."""

from __future__ import annotations

import base64
import struct
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import orjson

PATHS = ("/embeddings", "/moderations", "/images/generations", "/audio/transcriptions")


def vector(index: int, dimensions: int) -> list[float]:
    """The mock's embedding of input ``index``: exact in float32, so base64 and float answers agree."""
    return [(index + 1) * 0.25 + position * 0.5 for position in range(dimensions)]


def tokens_of(value: Any) -> int:
    """What the mock reports as ``prompt_tokens`` (a string's characters / 4 + 1, a token array's length)."""
    if isinstance(value, str):
        return len(value) // 4 + 1
    if value and all(isinstance(item, int) for item in value):
        return len(value)
    return sum(tokens_of(item) for item in value)


def read_form(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        form[name] = {"filename": filename, "bytes": payload, "type": part.get_content_type()} if filename else payload.decode()
    return form


def answer(path: str, content_type: str, body: bytes) -> tuple[int, str, bytes, dict]:
    """(status, content type, body, what was asked) for one plain endpoint request."""
    if path.endswith("/audio/transcriptions"):
        form = read_form(content_type, body)
        audio = form["file"]
        text = f"heard {len(audio['bytes'])} bytes of {audio['filename']}"
        if form.get("response_format") == "text":
            return 200, "text/plain; charset=utf-8", (text + "\n").encode(), form
        payload: dict[str, Any] = {"text": text}
        if "transcribe" in form["model"]:  # gpt-4o-transcribe reports tokens; whisper-1 does not
            payload["usage"] = {"type": "tokens", "input_tokens": 40, "output_tokens": 8, "total_tokens": 48,
                                "input_token_details": {"text_tokens": 0, "audio_tokens": 40}}
        return 200, "application/json", orjson.dumps(payload), form
    request = orjson.loads(body)
    model = request.get("model", "")
    if path.endswith("/embeddings"):
        inputs = request["input"]
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        dimensions = request.get("dimensions", 4)
        data = []
        for index, _ in enumerate(inputs):
            values = vector(index, dimensions)
            encoded: Any = values
            if request.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        used = tokens_of(request["input"])
        return 200, "application/json", orjson.dumps({"object": "list", "data": data, "model": model,
                                                      "usage": {"prompt_tokens": used, "total_tokens": used}}), request
    if path.endswith("/moderations"):
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        results = [{"flagged": False, "categories": {"harassment": False, "violence": False},
                    "category_scores": {"harassment": 0.0001, "violence": 0.0002},
                    "category_applied_input_types": {"harassment": ["text"], "violence": ["text"]}} for _ in inputs]
        return 200, "application/json", orjson.dumps({"id": "modr-mock", "model": model or "omni-moderation-latest",
                                                      "results": results}), request
    count = request.get("n", 1)
    item = ({"url": "https://example.invalid/image.png"} if request.get("response_format") == "url"
            else {"b64_json": base64.b64encode(b"\x89PNG mock image").decode()})
    payload = {"created": 1700000000, "data": [dict(item) for _ in range(count)]}
    if model.startswith("gpt-image"):
        payload["usage"] = {"total_tokens": 4170, "input_tokens": 10, "output_tokens": 4160,
                            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}
    return 200, "application/json", orjson.dumps(payload), request
