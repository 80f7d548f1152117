"""docs/redis-ha.md's example runs: its sh block, run by sh, leaves settings that subrelay reads as a
Sentinel target waiting for one replica; and the figures it quotes are the ones the partition tests print."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from proxy.config.settings import redis_url
from proxy.state.redis.connection import RedisOptions
from proxy.state.redis.target import parse_target

DOC = Path(__file__).parent.parent.parent / "docs" / "redis-ha.md"


def test_the_sentinel_example_configures_a_sentinel_target_that_waits_for_a_replica():
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    done = subprocess.run(["sh", "-c", blocks[0] + "\nenv"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("SUBRELAY_"))
    target = parse_target(redis_url(env), env)
    assert target.kind == "sentinel" and target.master == "subrelay" and len(target.hosts) == 3
    assert target.password == "the-data-nodes-password"
    assert RedisOptions.from_env(env).replicas_for(target) == 1


def test_the_doc_names_the_files_it_points_to():
    text = DOC.read_text()
    root = DOC.parent.parent
    for path in ("deploy/compose.yaml", "deploy/kubernetes/sentinel", "tests/cluster/test_partitions.py",
                 "tests/redis_ha.py"):
        assert path in text and (root / path).exists(), path
