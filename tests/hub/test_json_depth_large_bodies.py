"""The nesting limit holds whatever the body's size: small bodies count their brackets first, large ones
(past 4 KiB) are asked of orjson at once; either way too deep is a 400 and a long flat body is not."""

from __future__ import annotations

import pytest

from proxy.errors import BadRequest
from proxy.hub.checks import MAX_JSON_DEPTH, decode_json_object


def _nested(depth: int) -> bytes:
    return b'{"k":' * depth + b'"deep"' + b"}" * depth


@pytest.mark.parametrize("padding", [0, 10_000, 1_000_000])
def test_too_deep_is_refused_small_or_large(padding):
    body = b'{"pad":"' + b"x" * padding + b'","m":' + _nested(MAX_JSON_DEPTH + 5) + b"}"
    with pytest.raises(BadRequest) as caught:
        decode_json_object(body)
    assert caught.value.code == "json_too_deep"


@pytest.mark.parametrize("padding", [0, 10_000, 1_000_000])
def test_within_the_limit_passes_small_or_large(padding):
    body = b'{"pad":"' + b"x" * padding + b'","m":' + _nested(MAX_JSON_DEPTH - 5) + b',"many":' + \
        b"[" + b",".join([b"{}"] * 500) + b"]}"
    assert decode_json_object(body)["pad"] == "x" * padding
