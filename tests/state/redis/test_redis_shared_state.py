"""State replicas share through Redis besides the team store: the ``previous_response_id`` record
(any replica continues a conversation, only its owner may) and cooldowns."""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import BadRequest, ServiceUnavailable
from proxy.state.redis.cooldowns import RedisCooldowns
from proxy.state.redis.responses import RedisResponseStore

TURN = [{"role": "user", "content": "My name is Ada."}]
ANSWER = [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]}]


def _known(store, response_id: str, owner: str = "key:a") -> bool:
    try:
        store.history(response_id, owner)
        return True
    except BadRequest:
        return False


def test_a_response_recorded_by_one_replica_is_continued_by_another_for_its_owner_only(own_redis):
    first, second = (RedisResponseStore(own_redis.url, {}) for _ in range(2))
    first.put("resp_1", TURN, ANSWER, owner="key:a")
    history = second.history("resp_1", "key:a")
    assert history[0] == TURN[0] and history[1]["content"][0]["text"] == "Hello Ada." and "id" not in history[1]
    with pytest.raises(BadRequest) as other:
        second.history("resp_1", "key:b")  # another caller: the unknown-id 400, nothing revealed
    assert other.value.code == "previous_response_not_found"
    first.close()
    second.close()


def test_the_record_is_bounded_by_bytes_cluster_wide_oldest_first(own_redis):
    store = RedisResponseStore(own_redis.url, {}, max_bytes=600, max_age_seconds=60)
    for n in range(6):
        store.put(f"resp_{n}", TURN, ANSWER, owner="key:a")
    kept = [n for n in range(6) if _known(store, f"resp_{n}")]
    assert kept and kept == list(range(6 - len(kept), 6)) and len(kept) < 6
    store.put("resp_huge", [{"role": "user", "content": "x" * 1000}], [], owner="key:a")
    assert not _known(store, "resp_huge") and _known(store, "resp_5")
    store.close()


def test_a_stopped_redis_answers_503_for_a_continuation_and_loses_only_the_record(own_redis, caplog):
    store = RedisResponseStore(own_redis.url, {"SUBRELAY_REDIS_TIMEOUT": "0.5"})
    own_redis.stop()
    store.put("resp_2", TURN, ANSWER, owner="key:a")  # the answer was sent already: logged, not raised
    assert "could not record response resp_2" in caplog.text
    with pytest.raises(ServiceUnavailable) as down:
        store.history("resp_2", "key:a")
    assert down.value.code == "state_store_unavailable" and own_redis.password not in str(down.value)
    store.close()


async def test_a_cooldown_noted_on_one_replica_steers_the_others(own_redis):
    first, second = (RedisCooldowns.from_url(own_redis.url, {}) for _ in range(2))
    first.note(("codex", "acct-1", "*"), 120)
    await asyncio.gather(*first._tasks)
    await second.sync()
    assert 100 < second.remaining("codex", "acct-1", "gpt-5.5") <= 120
    assert second.remaining("codex", "acct-2", "gpt-5.5") == 0
    await first.close()
    await second.close()


async def test_cooldowns_keep_working_on_their_own_when_redis_is_away(own_redis, caplog):
    cooldowns = RedisCooldowns.from_url(own_redis.url, {"SUBRELAY_REDIS_TIMEOUT": "0.3"})
    own_redis.stop()
    cooldowns.note(("codex", "acct-1", "*"), 60)
    await asyncio.gather(*cooldowns._tasks)
    assert cooldowns.remaining("codex", "acct-1", "gpt-5.5") > 0
    assert "not shared with the other replicas" in caplog.text
    await cooldowns.close()
