"""A held stream costs little memory (issue 25 item 7): clients that ask for long streamed answers and
read nothing make the proxy stop reading the upstream at a bounded buffer, instead of taking the whole
answer in (about 4.5 MiB a stream before). The proxy is a process of its own, measured from /proc."""

from __future__ import annotations

import sys

import pytest

from benchmarks.probes.stalled_streams import measure


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the proxy's RSS from /proc")
def test_a_stream_whose_client_reads_nothing_holds_at_most_a_quarter_mebibyte():
    figures = measure(150, deltas="20000", size="64")
    # KiB per stalled stream: the probe at 300 streams reads 96-109 (the goal is 256); 512 leaves room for
    # the allocator's noise at this smaller count and still fails the old path by far (about 4,500).
    assert figures["per_stream"] <= 512, figures
