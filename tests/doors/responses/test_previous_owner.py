"""``previous_response_id`` belongs to whoever created it (issue 17, finding 6): with two client keys,
key B cannot continue key A's conversation, nor tell that A's response exists."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from proxy.server.app import create_app
from tests.mock_upstream import ServerThread

KEY_A = "key-a-" + "Aa1" * 6
KEY_B = "key-b-" + "Bb2" * 6
CODEX = "gpt-5.4"


@pytest.fixture
def proxy(proxy_settings):
    with ServerThread(create_app(replace(proxy_settings, api_keys=(KEY_A, KEY_B)))) as thread:
        yield thread.url


def ask(proxy: str, key: str, **body) -> httpx.Response:
    return httpx.post(f"{proxy}/v1/responses", json={"model": CODEX, **body},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_another_key_cannot_continue_or_probe_a_conversation(proxy, mock_codex, stream):
    first = ask(proxy, KEY_A, input="The launch code is tangerine.", stream=stream)
    assert first.status_code == 200
    response_id = ask(proxy, KEY_A, input="again").json()["id"] if stream else first.json()["id"]
    sent_before = len(mock_codex.state.requests)
    theirs = ask(proxy, KEY_B, input="What was the code?", previous_response_id=response_id)
    unknown = ask(proxy, KEY_B, input="What was the code?", previous_response_id="resp_" + "0" * len(response_id[5:]))
    assert theirs.status_code == unknown.status_code == 400
    assert theirs.json()["error"]["code"] == "previous_response_not_found"
    assert theirs.json()["error"]["message"].replace(response_id, "X") == \
        unknown.json()["error"]["message"].replace("resp_" + "0" * len(response_id[5:]), "X")
    assert len(mock_codex.state.requests) == sent_before  # nothing of A's went upstream for B
    mine = ask(proxy, KEY_A, input="What was the code?", previous_response_id=response_id)
    assert mine.status_code == 200
