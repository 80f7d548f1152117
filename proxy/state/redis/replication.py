"""What an operator needs to know about the Redis a replica writes to: which node it is (the primary's
address, found through Sentinel or the cluster's slot map), its role, its replicas and how far behind they
are, and whether it takes writes right now. ``/readyz`` and ``subrelay status`` show it; never a password.

Readiness is a write, not a PING: a demoted primary answers PING but refuses writes (READONLY), and a
primary cut off from its replicas with ``min-replicas-to-write`` refuses them too (NOREPLICAS). Both
would fail every request's admission, so both make the replica not ready and the load balancer moves on.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.state.redis.connection import bounded
from proxy.state.redis.target import describe
from proxy.state.team import StoreError

READY_TTL_MS = 30_000


async def replication(client: Redis, key: str, wait_replicas: int, timeout: float) -> dict[str, Any]:
    """The view of the node holding ``key`` (a key of ours, so in a cluster it is our slot's primary).
    ``writable`` False (with ``error``) when the write probe was refused; :class:`StoreError` when Redis does
    not answer at all."""
    target = getattr(client, "subrelay_target", None)
    view: dict[str, Any] = {"mode": target.kind if target else "single", "target": describe(target) if target else "",
                            "wait_replicas": wait_replicas}
    if isinstance(client, RedisCluster):
        await bounded(client.initialize(), timeout)
        node = client.get_node_from_key(key)
        info = await bounded(client.info("replication", target_nodes=node), timeout)
        address = f"{node.host}:{node.port}"
    else:
        info = await bounded(client.info("replication"), timeout)
        address = _address(client)
    replicas = []
    offset = int(info.get("master_repl_offset") or 0)
    for name, value in sorted(info.items()):
        if name.startswith("slave") and name[5:].isdigit() and isinstance(value, dict):
            replicas.append({"address": f"{value.get('ip')}:{value.get('port')}", "state": value.get("state"),
                             "lag_seconds": int(value.get("lag", 0)),
                             "behind_bytes": max(offset - int(value.get("offset", 0)), 0)})
    online = [r for r in replicas if r["state"] == "online"]
    view.update(primary=address, role="primary" if info.get("role") == "master" else "replica",
                replicas=replicas, lag_seconds=max((r["lag_seconds"] for r in online), default=None),
                durable=len(online) >= wait_replicas)
    if info.get("role") != "master":
        view.update(writable=False, error="this node is a replica (read-only)",
                    primary_link=info.get("master_link_status"))
        return view
    try:
        await bounded(client.set(key[: key.index("}") + 1] + ":ready", b"1", px=READY_TTL_MS), timeout)
        view["writable"] = True
    except StoreError as exc:
        view.update(writable=False, error=str(exc))
    return view


def _address(client: Redis) -> str:
    pool = client.connection_pool
    master = getattr(pool, "master_address", None)
    if master:
        return f"{master[0]}:{master[1]}"
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}"

