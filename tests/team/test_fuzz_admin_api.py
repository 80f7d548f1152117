"""Property-based fuzzing of the admin API through a real server, like the doors' (tests/server/test_fuzz_edge.py).

Bodies, query strings and user names are generated and mutated. What an operator relies on:
- the answer is 2xx or 4xx, never 5xx, and every error has the OpenAI error shape;
- the keep-alive connection survives: a valid request right after each bad one, on the same socket, succeeds;
- nothing a PATCH sends changes a user's key, and nothing the fuzzer sends shows a key hash.
"""

from __future__ import annotations

import copy
import os
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.server.app import create_app
from tests.keepalive import KeepAliveClient
from tests.mock_upstream import ServerThread
from tests.server.test_fuzz_edge import JSON, NASTY_TEXT
from tests.team.conftest import ADMIN_KEY

EXAMPLES = int(os.environ.get("SUBRELAY_FUZZ_EXAMPLES", "1000")) // 4
HEADERS = {"Content-Type": "application/json", "x-admin-key": ADMIN_KEY}
FULL_USER = {"name": "fuzz", "models": ["gpt-5*", "claude-*"], "rpm": 10, "tpm": 20000, "daily_tokens": 10**6,
             "fallback": True}
CHANGES = {"disabled": True, "models": ["gpt-5*"], "rpm": 5, "tpm": None, "daily_tokens": 7, "fallback": False}
NAMES = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True), NASTY_TEXT, st.text(max_size=70))
RAW = st.one_of(st.binary(max_size=64), st.just(b""), st.just(b"{"), st.just(b"\xff\xfe"), st.just(b"[]"),
                JSON.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)))


@st.composite
def mutated(draw, base: dict):
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.one_of(st.sampled_from(list(base)), st.text(max_size=12)))
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(st.one_of(JSON, NASTY_TEXT, NAMES))
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


@pytest.fixture(scope="module")
def fuzz_admin(tmp_path_factory):
    from proxy.config.settings import Settings

    home = tmp_path_factory.mktemp("fuzz-admin")
    settings_ = Settings(admin_key=ADMIN_KEY, codex_auth_path=str(home / "none.json"),
                         env={"SUBRELAY_STATE_DIR": str(home / "state")})
    with ServerThread(create_app(settings_)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def connection(fuzz_admin):
    client = KeepAliveClient("127.0.0.1", fuzz_admin.port)
    made = client.request("POST", "/api/admin/users", orjson.dumps({"name": "alice", "rpm": 3}), HEADERS)
    assert made.status == 201, made.body
    yield client
    client.close()


def _well_answered(response, sent) -> None:
    assert response.status < 500, (response.status, str(sent)[:300], response.body[:300])
    assert b"key_hash" not in response.body
    if response.status >= 400:
        error = orjson.loads(response.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]


def _still_serving(connection) -> dict:
    after = connection.request("GET", "/api/admin/users/alice", b"", HEADERS)
    assert after.status == 200, after.body[:300]
    return orjson.loads(after.body)


FUZZ = settings(max_examples=max(50, EXAMPLES), deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=True)


@FUZZ
@given(body=st.one_of(mutated(FULL_USER), RAW))
def test_adding_users_never_5xx_and_the_connection_survives(connection, body):
    response = connection.request("POST", "/api/admin/users", body, HEADERS)
    _well_answered(response, body)
    if response.status == 201:
        made = orjson.loads(response.body)
        assert made["key"].startswith("srk_")
        connection.request("DELETE", f"/api/admin/users/{quote(made['name'])}", b"", HEADERS)
    _still_serving(connection)


@FUZZ
@given(body=st.one_of(mutated(CHANGES), RAW))
def test_changing_a_user_never_5xx_and_never_changes_their_key(connection, body):
    before = _still_serving(connection)
    response = connection.request("PATCH", "/api/admin/users/alice", body, HEADERS)
    _well_answered(response, body)
    assert _still_serving(connection)["key_id"] == before["key_id"]


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["user", "since", "until", "group_by", "x"]),
                             st.one_of(NASTY_TEXT, st.text(max_size=30), st.sampled_from(
                                 ["user,day", "day", "model,provider", "2026-12-01", "alice", "user,,day"])),
                             max_size=4))
def test_usage_queries_never_5xx(connection, query):
    response = connection.request("GET", "/api/admin/usage?" + urlencode(query), b"", HEADERS)
    _well_answered(response, query)
    _still_serving(connection)


@FUZZ
@given(name=NAMES, action=st.sampled_from([("GET", ""), ("DELETE", ""), ("POST", "/rotate-key"), ("PATCH", "")]))
def test_any_user_name_in_the_path_never_5xx(connection, name, action):
    if name == "alice":
        return
    method, suffix = action
    response = connection.request(method, f"/api/admin/users/{quote(name, safe='')}{suffix}",
                                  b"{}" if method in ("POST", "PATCH") else b"", HEADERS)
    _well_answered(response, name)
    _still_serving(connection)
