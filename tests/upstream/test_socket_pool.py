"""The socket pool's bounds and isolation, driven directly against the mock backend's socket."""

from __future__ import annotations

import asyncio

import pytest

from adapters.codex import CodexAdapter
from proxy.credentials.base import Credential
from proxy.hub.caller import CALLER, Caller
from proxy.hub.model import Inbound, ModelRequest
from proxy.upstream.sockets import SocketAnswer, SocketPool


@pytest.fixture
def backend(mock_codex):
    mock_codex.state.websocket = True
    return mock_codex


def _request(backend, text: str = "hi", key: str = "conv-1", token: str | None = None):
    adapter = CodexAdapter(f"{backend.url}/backend-api/codex")
    body = {"model": "gpt-5.5", "input": text, "prompt_cache_key": key, "store": False}
    request = ModelRequest(model="gpt-5.5", inbound=Inbound("responses", body, b""))
    access = token or backend.state.issue_tokens()["access_token"]
    return adapter.build_request(request, "gpt-5.5", Credential(access, account_id="acc-0000-mock"))


async def _answer(pool: SocketPool, request) -> bytes:
    answer = await pool.open(request)
    assert isinstance(answer, SocketAnswer)
    data = b"".join([chunk async for chunk in answer.aiter_bytes()])
    await answer.aclose()
    return data


async def test_two_people_never_share_a_socket_even_on_the_same_conversation(backend):
    pool = SocketPool()
    try:
        token = backend.state.issue_tokens()["access_token"]
        for name in ("ann", "bob", "ann"):
            reset = CALLER.set(Caller("user", name))
            try:
                await _answer(pool, _request(backend, token=token))
            finally:
                CALLER.reset(reset)
        connections = [r["connection"] for r in backend.state.requests]
        assert connections[0] != connections[1] and connections[2] == connections[0]
        # Nor do two logins of one person.
        await _answer(pool, _request(backend))
        assert backend.state.requests[-1]["connection"] not in connections
    finally:
        await pool.close()


async def test_the_per_login_cap_sends_the_overflow_over_http_and_closes_idle_sockets_first(backend):
    pool = SocketPool(per_login=1)
    try:
        token = backend.state.issue_tokens()["access_token"]
        await _answer(pool, _request(backend, key="a", token=token))
        await _answer(pool, _request(backend, key="b", token=token))  # the idle "a" socket makes room
        assert pool.open_count == 1 and len(backend.state.ws_upgrades) == 2
        busy = await pool.open(_request(backend, "[[slow]] hi", key="c", token=token))
        try:
            assert await pool.open(_request(backend, key="d", token=token)) is None  # all busy: HTTP
        finally:
            await busy.aclose()
        assert pool.open_count == 0  # the unfinished one was closed, cancelling it upstream
    finally:
        await pool.close()


async def test_racing_requests_never_open_more_sockets_than_the_cap(backend):
    pool = SocketPool(per_login=3, total=3)
    try:
        token = backend.state.issue_tokens()["access_token"]
        answers = await asyncio.gather(*(pool.open(_request(backend, "[[slow]]", key=f"k{n}", token=token))
                                         for n in range(8)))
        opened = [a for a in answers if a is not None]
        assert len(opened) == 3 and len(backend.state.ws_upgrades) == 3
        for answer in opened:
            await answer.aclose()
    finally:
        await pool.close()


async def test_an_idle_socket_is_closed_after_its_bound_and_the_next_turn_goes_in_full(backend):
    pool = SocketPool(idle_seconds=0.05)
    try:
        token = backend.state.issue_tokens()["access_token"]
        await _answer(pool, _request(backend, token=token))
        for _ in range(100):  # the pool's own reaper closes it
            if pool.open_count == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.open_count == 0 and pool.idle == {}
        await _answer(pool, _request(backend, token=token))
        assert len(backend.state.ws_upgrades) == 2
    finally:
        await pool.close()


async def test_a_client_going_away_mid_answer_cancels_the_response_upstream(backend):
    pool = SocketPool()
    try:
        answer = await pool.open(_request(backend, "[[slow]] [[deltas:20]] hi"))
        chunks = answer.aiter_bytes()
        assert b"response.output_item.added" in await anext(chunks)  # the answer has begun
        await chunks.aclose()
        await answer.aclose()
        for _ in range(100):
            if backend.state.cancelled_streams:
                break
            await asyncio.sleep(0.05)
        assert backend.state.cancelled_streams == 1 and backend.state.finished_streams == 0
    finally:
        await pool.close()
