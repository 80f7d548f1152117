"""State the workers of one host share: the ``previous_response_id`` record and the Codex catalogue."""

from __future__ import annotations

import asyncio
import os
import stat

import httpx
import pytest

from proxy.upstream.catalog import CodexCatalog
from proxy.errors import BadRequest
from proxy.state.local.responses import SharedResponseStore

TURN = [{"role": "user", "content": "My name is Ada."}]
ANSWER = [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]}]


def test_a_response_recorded_by_one_worker_is_continued_by_another(tmp_path):
    path = str(tmp_path / "responses.sqlite3")
    first, second = SharedResponseStore(path), SharedResponseStore(path)
    first.put("resp_1", TURN, ANSWER)
    history = second.history("resp_1")
    assert history[0] == TURN[0]
    assert history[1]["content"][0]["text"] == "Hello Ada." and "id" not in history[1]  # replayable, no server id
    with pytest.raises(BadRequest) as missing:
        second.history("resp_unknown")
    assert missing.value.code == "previous_response_not_found"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # conversations are nobody else's business


def test_the_shared_record_is_bounded_by_age_and_bytes(tmp_path):
    now = [1000.0]
    path = str(tmp_path / "responses.sqlite3")
    store = SharedResponseStore(path, max_bytes=600, max_age_seconds=60, clock=lambda: now[0])
    store.put("resp_old", TURN, ANSWER)
    now[0] += 61
    with pytest.raises(BadRequest):
        store.history("resp_old")  # too old, though nothing newer pushed it out
    for n in range(6):
        now[0] += 1
        store.put(f"resp_{n}", TURN, ANSWER)
    kept = [n for n in range(6) if _known(store, f"resp_{n}")]
    assert kept and kept == list(range(6 - len(kept), 6)) and len(kept) < 6  # the oldest went first
    store.put("resp_huge", [{"role": "user", "content": "x" * 1000}], [])  # larger than the store: not kept
    assert not _known(store, "resp_huge") and _known(store, "resp_5")


def _known(store: SharedResponseStore, response_id: str) -> bool:
    try:
        store.history(response_id)
    except BadRequest:
        return False
    return True


def test_a_damaged_shared_record_is_started_again(tmp_path):
    path = tmp_path / "responses.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = SharedResponseStore(str(path))
    store.put("resp_1", TURN, ANSWER)
    assert store.history("resp_1")[0] == TURN[0]


class _Adapter:
    url = "http://127.0.0.1:9/backend-api/codex/responses"
    live_models = None
    live_routable: set[str] = set()


class _Credential:
    access_token = "at-test"
    account_id = "acc-1"


class _Source:
    async def current(self):
        return _Credential()


class _Provider:
    name = "codex"
    adapter = _Adapter()
    credentials = _Source()

    def problem(self):
        return None


CATALOGUE = {"models": [{"slug": "nova-1", "visibility": "list", "priority": 1, "supported_in_api": True}]}


def test_workers_read_the_catalogue_once_and_agree_on_it(tmp_path):
    """Two workers' catalogues on one file: one backend read per interval, and both list what it returned."""
    calls = []

    def backend(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=CATALOGUE, headers={"etag": '"v1"'})

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
            path = str(tmp_path / "catalog-codex.json")
            workers = [CodexCatalog(_Provider(), http, refresh_seconds=600, shared_path=path) for _ in range(2)]
            workers[1].provider = _Provider()
            workers[1].provider.adapter = _Adapter()
            for _ in range(2):  # two rounds each, interleaved as the workers' loops would run them
                await asyncio.gather(*(worker.follow_shared() for worker in workers))
            assert len(calls) == 1
            assert all(worker.payload == CATALOGUE for worker in workers)
            assert workers[1].provider.adapter.live_models is not None and "nova-1" in workers[1].provider.adapter.live_models

    asyncio.run(scenario())


def test_a_new_login_and_a_failed_read_reach_every_worker(tmp_path):
    """A login to another account makes the shared catalogue stale at once (its models, not the old
    account's); when the backend cannot be read, every worker falls back to the shipped list together."""
    answers = [httpx.Response(200, json=CATALOGUE), httpx.Response(503, json={"detail": "down"})]
    seen_accounts = []

    def backend(request: httpx.Request) -> httpx.Response:
        seen_accounts.append(request.headers.get("chatgpt-account-id"))
        return answers.pop(0)

    class _Switchable(_Source):
        account = "acc-1"

        async def current(self):
            credential = _Credential()
            credential.account_id = _Switchable.account
            return credential

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
            path = str(tmp_path / "catalog-codex.json")
            workers = []
            for _ in range(2):
                provider = _Provider()
                provider.adapter, provider.credentials = _Adapter(), _Switchable()
                workers.append(CodexCatalog(provider, http, refresh_seconds=600, shared_path=path))
            for worker in workers:
                await worker.follow_shared()
            assert all(worker.payload == CATALOGUE for worker in workers) and seen_accounts == ["acc-1"]
            _Switchable.account = "acc-2"  # `subrelay login` to another account, seen by both workers
            for worker in workers:
                await worker.follow_shared()
            assert seen_accounts == ["acc-1", "acc-2"]  # read once more, for the new account
            assert all(worker.payload is None and worker.provider.adapter.live_models is None for worker in workers)

    asyncio.run(scenario())
