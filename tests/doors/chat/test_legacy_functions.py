"""Issue 25, item 9: the deprecated function-calling fields (an assistant message's ``function_call``,
the request's ``functions`` and ``function_call``) are relayed as sent to an OpenAI-compatible
upstream, so a wrong type in them is a 400 naming the field, never a 200."""

from __future__ import annotations

import httpx
import pytest

from proxy.server.app import create_app

_ASK = {"role": "user", "content": "what is the weather?"}


def _assistant(**fields) -> dict:
    return {"model": "gpt-5.4", "messages": [_ASK, {"role": "assistant", "content": None, **fields},
                                             {"role": "user", "content": "go on"}]}


@pytest.mark.parametrize("body, param", [
    (_assistant(function_call=5), "messages[1].function_call"),
    (_assistant(function_call="weather"), "messages[1].function_call"),
    (_assistant(function_call={"arguments": "{}"}), "messages[1].function_call.name"),
    (_assistant(function_call={"name": "weather", "arguments": {"city": "Oslo"}}), "messages[1].function_call.arguments"),
    (_assistant(tool_calls={"id": "c1"}), "messages[1].tool_calls"),
    (_assistant(tool_calls=[{"id": "c1", "type": 5, "function": {"name": "w"}}]), "messages[1].tool_calls[0].type"),
    (_assistant(tool_calls=[{"id": "c1", "function": "w"}]), "messages[1].tool_calls[0].function"),
    ({"model": "gpt-5.4", "messages": [_ASK], "functions": {"name": "w"}}, "functions"),
    ({"model": "gpt-5.4", "messages": [_ASK], "functions": [{"name": 5}]}, "functions[0].name"),
    ({"model": "gpt-5.4", "messages": [_ASK], "functions": [{"name": "w", "parameters": "x"}]}, "functions[0].parameters"),
    ({"model": "gpt-5.4", "messages": [_ASK], "function_call": 5}, "function_call"),
    ({"model": "gpt-5.4", "messages": [_ASK], "function_call": {"name": ""}}, "function_call"),
])
async def test_a_wrong_type_in_legacy_function_fields_is_a_400_naming_it(proxy_settings, body, param):
    app = create_app(proxy_settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            answer = await client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[-1].split("[")[0] in error["message"]


async def test_well_formed_legacy_function_fields_still_work(proxy_settings):
    body = _assistant(function_call={"name": "weather", "arguments": "{\"city\": \"Oslo\"}"})
    body.update(functions=[{"name": "weather", "parameters": {"type": "object"}}], function_call="auto")
    app = create_app(proxy_settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8787") as client:
            answer = await client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
