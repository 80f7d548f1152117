"""Validating the plain endpoints' requests at the edge: every value subrelay or an upstream reads is
type- and range-checked here, once, as a 400 naming the ``param`` in OpenAI's error shape.

What is checked follows OpenAI's API reference: the input's types (a string, strings, token arrays),
``encoding_format``, ``dimensions``, an image's ``n`` and ``response_format``, a transcription's file and
fields. A field subrelay does not know passes through to the upstream (vendors add their own), but it
must be JSON the upstream can read like any other.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import BadRequest, PayloadTooLarge
from proxy.hub import checks
from proxy.hub.checks import decode_json_object, required_model
from proxy.hub.model import Inbound
from proxy.hub.multipart import FormPart, parse_form
from proxy.hub.plain import PlainRequest

MAX_INPUTS = 2048  # OpenAI's limit on an embedding request's inputs
MAX_TOKEN_ID = 2**31 - 1
MAX_DIMENSIONS = 65_536
MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's file limit for speech to text
MAX_FIELD_BYTES = 256 * 1024  # one text field of a form (a prompt, a language)
MAX_PROMPT = 32_000  # characters (gpt-image-1's limit; the longest any image model takes)
IMAGE_OUTPUT_TOKENS = 6_240  # the most output tokens one generated image is billed (gpt-image-1, high, 1536 px)
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"  # OpenAI's default when the request names none
DEFAULT_IMAGE_MODEL = "dall-e-2"  # likewise
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")


def parse_embeddings(raw: bytes) -> PlainRequest:
    body = decode_json_object(raw)
    model = required_model(body)
    if "input" not in body:
        raise BadRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    tokens = _embedding_input(body["input"])
    checks.opt_choice(body, "encoding_format", ("float", "base64"))
    checks.opt_integer(body, "dimensions", minimum=1, maximum=MAX_DIMENSIONS)
    checks.opt_string(body, "user", max_length=256)
    return PlainRequest("embeddings", model, Inbound("embeddings", body, raw), (tokens, 0))


def parse_moderations(raw: bytes) -> PlainRequest:
    body = decode_json_object(raw)
    model = required_model(body) if body.get("model") is not None else DEFAULT_MODERATION_MODEL
    if "input" not in body:
        raise BadRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    tokens = _moderation_input(body["input"])
    return PlainRequest("moderations", model, Inbound("moderations", body, raw), (tokens, 0))


def parse_image_generation(raw: bytes) -> PlainRequest:
    body = decode_json_object(raw)
    model = required_model(body) if body.get("model") is not None else DEFAULT_IMAGE_MODEL
    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    checks.string(prompt, "prompt", max_length=MAX_PROMPT, non_empty=True)
    count = checks.opt_integer(body, "n", minimum=1, maximum=10) or 1
    checks.opt_choice(body, "response_format", ("url", "b64_json"))
    for name in ("size", "quality", "style", "background", "moderation", "output_format"):
        checks.opt_string(body, name, max_length=32)
    checks.opt_integer(body, "output_compression", minimum=0, maximum=100)
    checks.opt_string(body, "user", max_length=256)
    _no_stream(checks.opt_boolean(body, "stream"), "stream")
    if body.get("partial_images") is not None:
        raise BadRequest("'partial_images' needs a streamed answer, which subrelay does not relay for images.",
                         param="partial_images", code="unsupported_value")
    return PlainRequest("images.generations", model, Inbound("images.generations", body, raw),
                        (len(prompt) // 4 + 1, count * IMAGE_OUTPUT_TOKENS))


def parse_transcription(raw: bytes, content_type: str) -> PlainRequest:
    """A ``multipart/form-data`` upload: one ``file`` (at most :data:`MAX_AUDIO_BYTES`) and text fields."""
    parts = parse_form(raw, content_type)
    fields: dict[str, Any] = {}
    audio: FormPart | None = None
    for part in parts:
        if part.name == "file":
            if audio is not None:
                raise BadRequest("The form has more than one 'file'.", param="file", code="invalid_value")
            if part.filename is None:
                raise BadRequest("'file' must be a file upload (a form field with a file name).", param="file",
                                 code="invalid_type")
            if not part.value:
                raise BadRequest("'file' is empty.", param="file", code="invalid_value")
            if len(part.value) > MAX_AUDIO_BYTES:
                raise PayloadTooLarge(f"'file' is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MiB, the most a "
                                      "transcription takes.", param="file")
            audio = part
            continue
        if part.filename is not None:
            raise BadRequest(f"'{part.name[:60]}' must be a text field, not a file.", param=part.name[:60],
                             code="invalid_type")
        if len(part.value) > MAX_FIELD_BYTES:
            raise BadRequest(f"'{part.name[:60]}' is longer than {MAX_FIELD_BYTES} bytes.", param=part.name[:60],
                             code="invalid_value")
        try:
            text = part.value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"'{part.name[:60]}' is not UTF-8 text.", param=part.name[:60], code="invalid_value") from None
        if part.name.endswith("[]"):  # a list field (timestamp_granularities[], include[])
            fields.setdefault(part.name, []).append(text)
        elif part.name in fields:
            raise BadRequest(f"The form has '{part.name[:60]}' more than once.", param=part.name[:60],
                             code="invalid_value")
        else:
            fields[part.name] = text
    if audio is None:
        raise BadRequest("Missing required parameter: 'file' (the audio, as a file field).", param="file",
                         code="missing_required_parameter")
    model = required_model(fields)
    checks.opt_choice(fields, "response_format", TRANSCRIPTION_FORMATS)
    checks.opt_string(fields, "language", max_length=16)
    checks.opt_string(fields, "prompt", max_length=MAX_PROMPT)
    if fields.get("temperature") is not None:
        _number_text(fields["temperature"], "temperature", 0.0, 1.0)
    for value in fields.get("timestamp_granularities[]", ()):
        checks.choice(value, "timestamp_granularities[]", ("word", "segment"))
    if fields.get("stream") is not None:
        _no_stream(fields["stream"].strip().lower() not in ("false", "0", ""), "stream")
    # The audio's tokens are not known before the answer: about one per 400 bytes (generous for
    # compressed speech), plus the prompt; the reply's text as much again, bounded.
    prompt = fields.get("prompt") or ""
    estimate = (len(audio.value) // 400 + len(prompt) // 4 + 1, min(len(audio.value) // 400 + 1, 16_384))
    inbound = Inbound("audio.transcriptions", fields, raw, {"content-type": content_type})
    return PlainRequest("audio.transcriptions", model, inbound, estimate, parts=parts)


def _embedding_input(value: Any) -> int:
    """The input's size in tokens (a token array's length, a string's characters / 4): a string, a list of
    strings, a list of token ids, or a list of token arrays; nothing empty."""
    if isinstance(value, str):
        checks.string(value, "input", non_empty=True)
        return len(value) // 4 + 1
    checks.array(value, "input", max_items=MAX_INPUTS, non_empty=True)
    first = value[0]
    if isinstance(first, str):
        for index, item in enumerate(value):
            checks.string(item, f"input[{index}]", non_empty=True)
        return sum(len(item) // 4 + 1 for item in value)
    if isinstance(first, int) and not isinstance(first, bool):
        return _token_ids(value, "input")
    if isinstance(first, list):
        total = 0
        for index, item in enumerate(value):
            checks.array(item, f"input[{index}]", non_empty=True)
            total += _token_ids(item, f"input[{index}]")
        return total
    raise checks.invalid("input", "a string, an array of strings, an array of token ids or an array of token "
                         "arrays", first if not isinstance(first, (dict, list)) else value)


def _token_ids(value: list, param: str) -> int:
    for index, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= MAX_TOKEN_ID:
            raise BadRequest(f"'{param}[{index}]' must be a token id (an integer from 0 to {MAX_TOKEN_ID}).",
                             param=f"{param}[{index}]", code="invalid_type")
    return len(value)


def _moderation_input(value: Any) -> int:
    """A string, a list of strings, or a list of parts ({"type": "text", "text"} or
    {"type": "image_url", "image_url": {"url"}}); the text's size in tokens."""
    if isinstance(value, str):
        return len(checks.string(value, "input")) // 4 + 1
    checks.array(value, "input", max_items=MAX_INPUTS, non_empty=True)
    total = 0
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if isinstance(item, str):
            total += len(item) // 4 + 1
            continue
        part = checks.obj(item, param)
        kind = checks.choice(part.get("type"), f"{param}.type", ("text", "image_url"))
        if kind == "text":
            total += len(checks.string(part.get("text"), f"{param}.text")) // 4 + 1
        else:
            image = checks.obj(part.get("image_url"), f"{param}.image_url")
            checks.image_part(checks.string(image.get("url"), f"{param}.image_url.url"), None, f"{param}.image_url.url")
            total += 256  # an image's share of the estimate
    return total


def _number_text(value: str, param: str, low: float, high: float) -> None:
    try:
        number = float(value)
    except ValueError:
        raise checks.invalid(param, "a number", value) from None
    if not low <= number <= high:
        raise BadRequest(f"'{param}' must be between {low:g} and {high:g}.", param=param, code="invalid_value")


def _no_stream(value: bool | None, param: str) -> None:
    if value:
        raise BadRequest("Streamed answers are not relayed for this endpoint; leave 'stream' unset.", param=param,
                         code="unsupported_value")
