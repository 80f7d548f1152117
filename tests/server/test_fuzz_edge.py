"""Property-based fuzzing of every route and every adapter through a real server.

Bodies are generated (random JSON, random objects shaped like requests) and mutated (a valid,
full-featured body with one value replaced or removed anywhere in it), for models routed to each
adapter: Codex, an OpenAI-compatible key, Anthropic. The properties a user relies on:
- the proxy answers 2xx or 4xx, never 5xx, and every error has the OpenAI error shape;
- the keep-alive connection survives: a valid request right after each bad one, on the same
  socket, succeeds.
"""

from __future__ import annotations

import copy
import os
import tomllib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from proxy.server.app import create_app
from proxy.config.settings import Settings
from proxy.config.file import parse_config
from tests.conftest import write_auth_file
from tests.keepalive import KeepAliveClient
from tests.mock_upstream import MockCodexServer, ServerThread
from tests.mock_upstream.anthropic_server import MockAnthropicServer
from tests.mock_upstream.openai_server import MockOpenAIServer

EXAMPLES = int(os.environ.get("SUBRELAY_FUZZ_EXAMPLES", "1000"))
MODELS = ["gpt-5.4", "codex/gpt-5.4-mini", "gpt-4.1", "openai/gpt-4o", "claude-sonnet-4-5", "anthropic/claude-haiku-4-5"]
JSON_HEADERS = {"Content-Type": "application/json"}

FULL_BODY = {
    "model": "gpt-5.4",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this image, and the weather in Paris?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        {"role": "user", "content": "thanks, and again?", "name": "ann"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}}],
    "tool_choice": "auto", "parallel_tool_calls": True, "stream": False,
    "stream_options": {"include_usage": True}, "reasoning_effort": "low", "max_tokens": 300,
    "temperature": 0.2, "stop": ["\n\n\n"], "user": "fuzz", "prompt_cache_key": "conv-1",
    "response_format": {"type": "text"}, "metadata": {"k": "v"},
}
VALID = orjson.dumps({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]})

# Strings that broke things before: non-ASCII, CR/LF, NUL, huge, empty, header-ish.
NASTY_TEXT = st.sampled_from(["", " ", "é", "\u2028", "line\r\nX-Injected: 1", "\x00", "a" * 5000, "[[fail]]",
                              "gpt-5.4\r\n", "../../etc", "ÿ", "🙂", "null", "Bearer x"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30), NASTY_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                    max_leaves=12)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


ALL_PATHS = [path for path in _paths(FULL_BODY) if path]


@st.composite
def mutated_bodies(draw):
    body = copy.deepcopy(FULL_BODY)
    body["model"] = draw(st.sampled_from(MODELS))
    body["stream"] = draw(st.booleans())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = body
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


@st.composite
def request_shaped_bodies(draw):
    body = draw(st.dictionaries(st.sampled_from(list(FULL_BODY)), JSON, max_size=6))
    body.setdefault("model", draw(st.one_of(st.sampled_from(MODELS), NASTY_TEXT, JSON)))
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


RAW_BODIES = st.one_of(st.binary(max_size=64), st.just(b""), st.just(b"{"), st.just(b"\xff\xfe"),
                       JSON.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)))
BODIES = st.one_of(mutated_bodies(), mutated_bodies(), request_shaped_bodies(), RAW_BODIES)


@pytest.fixture(scope="module")
def fuzz_proxy(tmp_path_factory):
    codex, openai_mock, anthropic = MockCodexServer(), MockOpenAIServer(), MockAnthropicServer()
    codex.state.record = openai_mock.state.record = False
    with ServerThread(codex) as codex_thread, ServerThread(openai_mock) as openai_thread, \
            ServerThread(anthropic) as anthropic_thread:
        home = tmp_path_factory.mktemp("fuzz")
        auth = str(home / "auth.json")
        write_auth_file(auth, codex.state.auth_file(expires_in=10**6))
        config = parse_config(tomllib.loads(f'[providers.openai]\nkind = "openai"\nbase_url = "{openai_thread.url}/v1"\n'
                                            'models = ["gpt-4.1", "gpt-4o"]\n'))
        openai_mock.state.api_key = "sk-proj-" + "Fz9" * 12
        settings_ = Settings(codex_base_url=f"{codex_thread.url}/backend-api/codex",
                             codex_token_url=f"{codex_thread.url}/oauth/token", codex_auth_path=auth,
                             anthropic_base_url=anthropic_thread.url, file=config,
                             env={"OPENAI_API_KEY": openai_mock.state.api_key,
                                  "ANTHROPIC_API_KEY": anthropic.state.api_key, "CLAUDE_CONFIG_DIR": str(home)})
        with ServerThread(create_app(settings_)) as proxy:
            anthropic.state.requests = _Discard()
            yield proxy


class _Discard(list):
    def append(self, item) -> None:  # the Anthropic mock records every request; fuzzing makes many
        pass


def _assert_well_answered(response, sent: bytes) -> None:
    assert response.status < 500, (response.status, sent[:300], response.body[:300])
    if response.status >= 400:
        error = orjson.loads(response.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]


@pytest.fixture(scope="module")
def connection(fuzz_proxy):
    client = KeepAliveClient("127.0.0.1", fuzz_proxy.port)
    yield client
    client.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=BODIES)
def test_chat_completions_never_5xx_and_the_connection_survives(connection, body):
    response = connection.request("POST", "/v1/chat/completions", body, JSON_HEADERS)
    _assert_well_answered(response, body)
    after = connection.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS)
    assert after.status == 200, after.body[:300]


@settings(max_examples=max(50, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(model=st.one_of(st.text(max_size=40), NASTY_TEXT, st.sampled_from(MODELS)))
def test_model_lookup_never_5xx(connection, model):
    from urllib.parse import quote

    response = connection.request("GET", "/v1/models/" + quote(model, safe=""))
    _assert_well_answered(response, model.encode())
    assert connection.request("GET", "/v1/models").status == 200


def test_an_unexpected_exception_is_an_openai_500_and_the_connection_stays_usable(fuzz_proxy, monkeypatch):
    """The class of bug the fuzzer hunts: an exception escaping an adapter."""
    from adapters.codex import CodexAdapter

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(CodexAdapter, "build_request", broken)
    client = KeepAliveClient("127.0.0.1", fuzz_proxy.port)
    try:
        failed = client.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS)
        assert failed.status == 500
        assert orjson.loads(failed.body)["error"]["code"] == "internal_error"
        monkeypatch.undo()
        assert client.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS).status == 200
    finally:
        client.close()


# -- count_tokens, compact and deep nesting (issue 17, finding 8) -------------------------------------

def _image(header: bytes) -> str:
    import base64

    return base64.b64encode(header).decode()


PNG_0x0 = _image(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 8 + b"\x08\x06\x00\x00\x00")
GIF_0x0 = _image(b"GIF89a" + b"\x00\x00\x00\x00" + b"\x00" * 6)
FULL_MESSAGES = {
    "model": "claude-sonnet-4-5",
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_0x0}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": GIF_0x0}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    ],
    "tools": [{"name": "look", "description": "Look", "input_schema": {"type": "object", "properties": {}}}],
}
FULL_COMPACT = {"model": "gpt-5.4", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
                "instructions": "Summarise."}
COUNT_MODELS = ["claude-sonnet-4-5", "gpt-5.4", "gpt-4.1"]


@st.composite
def mutated(draw, full: dict, models: list[str]):
    body = copy.deepcopy(full)
    body["model"] = draw(st.sampled_from(models))
    paths = [path for path in _paths(full) if path]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        parent = body
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def _assert_anthropic_answered(response, sent: bytes) -> None:
    assert response.status < 500, (response.status, sent[:300], response.body[:300])
    if response.status >= 400:
        body = orjson.loads(response.body)
        assert body["type"] == "error" and isinstance(body["error"]["message"], str), body


@settings(max_examples=max(50, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(body=st.one_of(mutated(FULL_MESSAGES, COUNT_MODELS), RAW_BODIES))
def test_count_tokens_never_5xx_and_the_connection_survives(connection, body):
    response = connection.request("POST", "/v1/messages/count_tokens", body, JSON_HEADERS)
    _assert_anthropic_answered(response, body)
    assert connection.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS).status == 200


@pytest.mark.parametrize("field,value", [("messages", 3), ("messages", True), ("tools", 7), ("tools", True),
                                         ("messages", {"role": "user"})])
def test_count_tokens_names_a_field_of_the_wrong_type(connection, field, value):
    body = {**FULL_MESSAGES, "model": "gpt-5.4", field: value}
    response = connection.request("POST", "/v1/messages/count_tokens", orjson.dumps(body), JSON_HEADERS)
    assert response.status == 400, response.body
    error = orjson.loads(response.body)["error"]
    assert error["type"] == "invalid_request_error" and f"'{field}'" in error["message"]


def test_count_tokens_counts_a_0x0_image_as_unknown(connection):
    response = connection.request("POST", "/v1/messages/count_tokens",
                                  orjson.dumps({**FULL_MESSAGES, "model": "gpt-5.4"}), JSON_HEADERS)
    assert response.status == 200 and orjson.loads(response.body)["input_tokens"] > 3200


@settings(max_examples=max(50, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(body=st.one_of(mutated(FULL_COMPACT, ["gpt-5.4", "gpt-4.1", "claude-sonnet-4-5"]), RAW_BODIES))
def test_compact_never_5xx_and_the_connection_survives(connection, body):
    response = connection.request("POST", "/v1/responses/compact", body, JSON_HEADERS)
    _assert_well_answered(response, body)
    assert connection.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS).status == 200


def _nested(depth: int) -> bytes:
    """JSON nested ``depth`` containers deep (as bytes: orjson itself would refuse to write it)."""
    opening = "".join("[" if level % 2 else '{"k":' for level in range(depth))
    closing = "".join("]" if level % 2 else "}" for level in reversed(range(depth)))
    return f'{opening}"deep"{closing}'.encode()


def _with(base: dict, field: str, raw_value: bytes) -> bytes:
    """``base`` with ``field`` set to the raw JSON ``raw_value``."""
    rest = orjson.dumps({key: value for key, value in base.items() if key != field})
    return rest[:-1] + b',"' + field.encode() + b'":' + raw_value + b"}"


DOORS = {
    "/v1/chat/completions": ({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]},
                             ("metadata", "tools")),
    "/v1/responses": ({"model": "gpt-5.4", "input": "hi"}, ("metadata", "input")),
    "/v1/responses/compact": (FULL_COMPACT, ("metadata", "input")),
    "/v1/messages": ({"model": "gpt-5.4", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
                     ("metadata", "tools")),
    "/v1/messages/count_tokens": ({**FULL_MESSAGES, "model": "claude-sonnet-4-5"}, ("metadata", "tools")),
}


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize("depth", [200, 254, 256, 600, 1100])
def test_json_nested_past_the_limit_is_a_400_naming_it_on_every_door(connection, door, depth):
    base, fields = DOORS[door]
    for field in fields:
        body = _with(base, field, _nested(depth))
        response = connection.request("POST", door, body, JSON_HEADERS)
        assert response.status == 400, (door, field, depth, response.body[:300])
        assert "128 levels" in response.body.decode(), response.body[:300]
    assert connection.request("POST", "/v1/chat/completions", VALID, JSON_HEADERS).status == 200


@pytest.mark.parametrize("door", list(DOORS))
def test_json_within_the_limit_is_not_refused_for_its_depth(connection, door):
    base, _ = DOORS[door]
    response = connection.request("POST", door, _with(base, "metadata", _nested(100)), JSON_HEADERS)
    assert response.status < 500 and b"json_too_deep" not in response.body, response.body[:300]
