"""The ``previous_response_id`` store's byte cap is the memory it holds (issue 17, finding 5): filled far
past a 16 MiB cap, the process grows by about the cap, not ~10× it as when parsed objects were kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from proxy.errors import BadRequest
from proxy.state.local.responses import SharedResponseStore
from proxy.state.responses import ResponseStore

CAP = 16 * 1024 * 1024

_FILL = textwrap.dedent("""
    import gc, sys
    from proxy.state.responses import ResponseStore

    def rss() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

    store = ResponseStore(max_bytes=int(sys.argv[1]), max_age_seconds=3600)
    gc.collect()
    before = rss()
    for n in range(int(sys.argv[2])):  # many small items, as agents send: the shape parsed JSON bloats most
        turn = [{"role": "user", "content": [{"type": "input_text", "text": f"q{n}-{i}"}]} for i in range(40)]
        answer = [{"type": "message", "role": "assistant", "id": f"msg_{n}",
                   "content": [{"type": "output_text", "text": f"a{n}-{i}"}]} for i in range(40)]
        store.put(f"resp_{n}", turn, answer, owner="owner:abc")
    gc.collect()
    print(rss() - before, store._bytes, len(store))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_full_store_holds_about_its_cap_in_memory():
    done = subprocess.run([sys.executable, "-c", _FILL, str(CAP), "12000"], capture_output=True, text=True,
                          timeout=240, check=True)
    growth, counted, entries = (int(x) for x in done.stdout.split())
    print(f"store cap {CAP / 2**20:.0f} MiB, counted {counted / 2**20:.1f} MiB in {entries} responses, "
          f"RSS growth {growth / 2**20:.1f} MiB ({growth / CAP:.2f}x the cap)")
    assert counted <= CAP and entries < 12000  # it was filled past the cap and evicted
    assert growth < 1.5 * CAP


@pytest.mark.parametrize("shared", [False, True])
def test_a_stored_response_belongs_to_its_creator(tmp_path, shared):
    store = SharedResponseStore(str(tmp_path / "responses.sqlite3")) if shared else ResponseStore()
    store.put("resp_a", [{"role": "user", "content": "secret plans"}], [], owner="owner:aaaa")
    assert store.history("resp_a", owner="owner:aaaa")[0]["content"] == "secret plans"
    with pytest.raises(BadRequest) as other:
        store.history("resp_a", owner="owner:bbbb")
    with pytest.raises(BadRequest) as unknown:
        store.history("resp_never", owner="owner:bbbb")
    assert other.value.code == unknown.value.code == "previous_response_not_found"
    assert str(other.value).replace("resp_a", "X") == str(unknown.value).replace("resp_never", "X")
