"""The cluster across separate hosts (issue 32): every Redis node with its Sentinel, every subrelay replica
and HAProxy in a network namespace of its own (tests/netns.py), the mock Codex + auth server on the test's
own address. Partitions are real: a link down at the switch or iptables DROP rules inside a namespace.

Tried, in this order on one cluster: a replica cut off from Redis (bounded 503 there, HAProxy takes it out by
``/readyz``, the others serve, back when healed without a restart); the primary partitioned during a refresh
storm (Sentinel promotes a replica; exactly one refresh per person at the auth server, nobody logged out);
a limit of N across a failover (admits at most N). Each prints the figures the docs quote.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from proxy.state.redis.team import RedisTeamStore
from tests import netns
from tests.cluster.conftest import HAPROXY, SECRET_KEY, Replica
from tests.cluster.test_replicas import _add_user, _put_login  # the same on this cluster: .cli, .redis, .mock
from tests.conftest import write_auth_file
from tests.mock_upstream import MockCodexServer, ServerThread
from tests.redis_server import REDIS_SERVER, SKIP_REASON

REPLICA_HEADER = "x-subrelay-replica"
REDIS_TIMEOUT = 1.0
PORT = 8080  # every host is its own namespace: the same port everywhere
REDIS_HOSTS = ("redis1", "redis2", "redis3")
UNAVAILABLE = (502, 503, 504)


@dataclass
class NetReplica(Replica):
    """A replica listening on its own host's address, started inside that host's namespace."""

    address: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{PORT}"

    def start(self, net: netns.Net) -> None:  # type: ignore[override]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(net.run(self.name, sys.executable, "-m", "proxy", "serve", "--host",
                                                    self.address, "--port", str(PORT)),
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)


@dataclass
class NetCluster:
    net: netns.Net
    redis: object  # tests.redis_ha.SentinelSet
    mock: MockCodexServer
    replicas: list[NetReplica]
    base_env: dict[str, str]
    workdir: str
    haproxy: subprocess.Popen | None = None
    cut: set[str] = field(default_factory=set)  # hosts partitioned right now

    @property
    def url(self) -> str:
        return f"http://{self.net.hosts['lb']}:{PORT}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60,
                              env=self.base_env)

    def primary(self, exclude: tuple[str, ...] = ()) -> str:
        """The primary's address as the sentinels on hosts not cut off (nor in ``exclude``) name it."""
        for host, sentinel in zip(REDIS_HOSTS, self.redis.sentinels):
            if host not in self.cut and host not in exclude:
                found = sentinel.primary()
                if found:
                    return found
        return ""

    def primary_host(self) -> str:
        address = self.primary().split(":")[0]
        return next(host for host in REDIS_HOSTS if self.net.hosts[host] == address)

    def wait_replicas_online(self, count: int, seconds: float = 40.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            primary = self.primary()
            node = next((n for n in self.redis.nodes if n.address == primary), None)
            info = node.info() if node else {}
            online = sum(1 for k, v in info.items() if k.startswith("slave") and "state=online" in v)
            if online >= count:
                return
            assert time.monotonic() < deadline, f"only {online} replica(s) online behind {primary}"
            time.sleep(0.2)


def _haproxy_config(address: str, replicas: list[NetReplica]) -> str:
    servers = "\n".join(f"    server {r.name} {r.address}:{PORT} check inter 500ms fall 2 rise 2" for r in replicas)
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 3s
    retries 2
    option redispatch

frontend subrelay
    bind {address}:{PORT}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host {address}
    http-response set-header X-Subrelay-Replica %s
{servers}
"""


def _wait(check, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        time.sleep(0.1)


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.TransportError:
        return 0


@pytest.fixture(scope="module")
def net_cluster() -> Iterator[NetCluster]:
    if REDIS_SERVER is None or shutil.which("redis-cli") is None:
        pytest.skip(SKIP_REASON)
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run does it)")
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"the partition tests need network namespaces: {reason}")
    from tests.redis_ha import SentinelSet

    net = netns.Net()
    workdir = tempfile.mkdtemp(prefix="subrelay-netns-")
    started: list = []
    thread = None
    replicas: list[NetReplica] = []
    haproxy = None
    try:
        hosts = [(net.host(name, 11 + n), net.ns(name)) for n, name in enumerate(REDIS_HOSTS)]
        for n in (1, 2, 3):
            net.host(f"r{n}", 20 + n)
        net.host("lb", 30)
        redis = SentinelSet(hosts=hosts, min_replicas=1, max_lag=2, root=workdir)
        started.append(redis)
        redis.start()
        mock = MockCodexServer()
        thread = ServerThread(mock, host=netns.ROOT_ADDRESS).start()
        auth_path = os.path.join(workdir, "auth.json")
        write_auth_file(auth_path, mock.state.auth_file())
        base_env = {**os.environ, "SUBRELAY_REDIS_URL": redis.url, "SUBRELAY_SECRET_KEY": SECRET_KEY,
                    "SUBRELAY_USER_MAX_CONCURRENT": "1000", "SUBRELAY_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
                    "SUBRELAY_CODEX_BASE_URL": f"{thread.url}/backend-api/codex", "SUBRELAY_AUTH_BASE_URL": thread.url,
                    "CODEX_AUTH_PATH": auth_path, "SUBRELAY_LOG_LEVEL": "info",
                    "SUBRELAY_STATE_DIR": os.path.join(workdir, "admin-state")}
        for name in ("SUBRELAY_API_KEYS", "SUBRELAY_CONFIG", "SUBRELAY_WORKERS", "SUBRELAY_PORT", "SUBRELAY_HOST"):
            base_env.pop(name, None)
        # Off loopback subrelay insists on client keys: the owner's, as a deployment would set (members use theirs).
        owner = {"SUBRELAY_API_KEYS": "owner-key-for-the-namespace-cluster-0123456789"}
        replicas = [NetReplica(f"r{n}", PORT, {**base_env, **owner,
                                                "SUBRELAY_STATE_DIR": os.path.join(workdir, f"state-r{n}")},
                               os.path.join(workdir, f"r{n}.log"), address=net.hosts[f"r{n}"]) for n in (1, 2, 3)]
        for replica in replicas:
            replica.start(net)
        for replica in replicas:
            try:
                _wait(lambda r=replica: _get(r.url + "/readyz") == 200, f"replica {replica.name} ready", 60)
            except AssertionError:
                raise AssertionError(f"replica {replica.name} not ready: {replica.log()[-3000:]}") from None
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as handle:
            handle.write(_haproxy_config(net.hosts["lb"], replicas))
        haproxy = subprocess.Popen(net.run("lb", HAPROXY, "-db", "-f", config), stdout=subprocess.DEVNULL,
                                   stderr=open(os.path.join(workdir, "haproxy.log"), "wb"))
        cluster = NetCluster(net, redis, mock, replicas, base_env, workdir, haproxy)
        _wait(lambda: _get(cluster.url + "/healthz") == 200, "haproxy")
        time.sleep(1.5)  # every server has passed its first checks (inter 500ms, rise 2)
        yield cluster
    finally:
        if haproxy is not None and haproxy.poll() is None:
            os.kill(haproxy.pid, signal.SIGTERM)
            haproxy.wait(timeout=10)
        for replica in replicas:
            replica.stop()
        if thread is not None:
            thread.stop()
        for each in started:
            each.stop()
        if os.environ.get("SUBRELAY_KEEP_TEST_LOGS"):  # debugging: keep the replicas', Redis' and Sentinel's logs
            shutil.copytree(workdir, os.environ["SUBRELAY_KEEP_TEST_LOGS"], dirs_exist_ok=True)
        for each in started:
            each.close()
        net.close()  # the namespaces, links and anything left inside them
        shutil.rmtree(workdir, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------------


async def _login_of(cluster: NetCluster, name: str):
    store = RedisTeamStore.from_url(cluster.redis.url, {})
    try:
        return await store.get_login(name)
    finally:
        await store.close()


async def _ask(client: httpx.AsyncClient, url: str, key: str, text: str) -> httpx.Response:
    return await client.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                             json={"model": "gpt-5.5", "messages": [{"role": "user", "content": text}]})


async def _until_served(client: httpx.AsyncClient, url: str, key: str, text: str,
                        seconds: float = 60.0) -> tuple[httpx.Response | None, int]:
    """What a client with retries does: try again on 502/503/504 or a broken connection, up to ``seconds``."""
    deadline, tries = time.monotonic() + seconds, 0
    answer = None
    while time.monotonic() < deadline:
        tries += 1
        try:
            answer = await _ask(client, url, key, text)
            if answer.status_code not in UNAVAILABLE:
                return answer, tries
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    return answer, tries


def _cut_primary(cluster: NetCluster) -> tuple[str, str]:
    host = cluster.primary_host()
    old = cluster.primary()
    cluster.net.cut(host)
    cluster.cut.add(host)
    return host, old


def _heal(cluster: NetCluster, host: str) -> None:
    cluster.net.heal(host)
    cluster.cut.discard(host)


# -- the partitions --------------------------------------------------------------------------------


async def test_a_replica_cut_off_from_redis_answers_a_bounded_503_and_haproxy_routes_around_it(
        net_cluster: NetCluster):
    cluster = net_cluster
    key = _add_user(cluster, "ada")
    await _put_login(cluster, "ada")
    victim, others = cluster.replicas[0], cluster.replicas[1:]
    pid = victim.process.pid
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await _ask(client, victim.url, key, "before")).status_code == 200
        cluster.net.block(victim.name, list(REDIS_HOSTS))  # silence: packets dropped, no refusal
        try:
            started = time.monotonic()
            refused = await _ask(client, victim.url, key, "cut off")
            took = time.monotonic() - started
            print(f"\ncut-off replica: {refused.status_code} {refused.json().get('error', {}).get('code')} "
                  f"in {took:.2f} s (SUBRELAY_REDIS_TIMEOUT={REDIS_TIMEOUT:g})")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "state_store_unavailable"
            assert took < 10 * REDIS_TIMEOUT
            started = time.monotonic()
            assert _get(victim.url + "/readyz", timeout=10) == 503
            assert time.monotonic() - started < 5 * REDIS_TIMEOUT
            for other in others:  # the others never noticed
                assert (await _ask(client, other.url, key, "still fine")).status_code == 200
            await asyncio.sleep(2 * 0.5 + REDIS_TIMEOUT * 3)  # fall 2 at inter 500ms, each check ~timeout
            served = []
            for n in range(12):
                answer = await _ask(client, cluster.url, key, f"through haproxy {n}")
                assert answer.status_code == 200, answer.text
                served.append(answer.headers[REPLICA_HEADER])
            assert victim.name not in served and set(served) == {r.name for r in others}
        finally:
            cluster.net.heal(victim.name)
        healed = time.monotonic()
        _wait(lambda: _get(victim.url + "/readyz") == 200, "the healed replica ready again", 30)
        print(f"healed replica ready again after {time.monotonic() - healed:.2f} s, same process")
        assert (await _ask(client, victim.url, key, "healed")).status_code == 200
        assert victim.process.pid == pid and victim.process.poll() is None  # no restart
        await asyncio.sleep(2.0)  # rise 2 at inter 500ms
        served = {(await _ask(client, cluster.url, key, f"back {n}")).headers[REPLICA_HEADER] for n in range(9)}
        assert served == {"r1", "r2", "r3"}


async def test_a_refresh_storm_across_a_primary_failover_refreshes_once_and_logs_nobody_out(
        net_cluster: NetCluster):
    cluster = net_cluster
    people = ["p1", "p2", "p3"]
    keys = {name: _add_user(cluster, name) for name in people}
    probe_key = _add_user(cluster, "probe")
    await _put_login(cluster, "probe")
    for name in people:
        await _put_login(cluster, name, expires_in=-600)  # expired ten minutes ago: the first request refreshes
    versions = {name: (await _login_of(cluster, name)).version for name in people}
    state = cluster.mock.state
    before, state.refresh_delay = state.refresh_calls, 1.5  # the refreshes are in flight when the primary goes
    probes: list[tuple[float, bool]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def probe() -> None:  # a person with a fresh login, asking every 100 ms: what a client sees
            while not stop.is_set():
                started = time.monotonic()
                try:
                    ok = (await _ask(client, cluster.url, probe_key, "probe")).status_code == 200
                except httpx.TransportError:
                    ok = False
                probes.append((started, ok))
                await asyncio.sleep(0.1)

        prober = asyncio.create_task(probe())
        storm = [asyncio.create_task(_until_served(client, cluster.url, keys[name], f"storm {name} {n}"))
                 for name in people for n in range(20)]
        _wait_async_start = time.monotonic()
        while state.refresh_calls - before < 1:
            assert time.monotonic() - _wait_async_start < 20, "no refresh reached the auth server"
            await asyncio.sleep(0.05)
        host, old_primary = _cut_primary(cluster)
        cut_at = time.monotonic()
        try:
            answers = await asyncio.gather(*storm)
            deadline = time.monotonic() + 30
            while cluster.primary() in ("", old_primary):
                assert time.monotonic() < deadline, "Sentinel did not promote a replica"
                await asyncio.sleep(0.2)
            promoted = cluster.primary()
            await asyncio.sleep(1.0)
            stop.set()
            await prober
        finally:
            state.refresh_delay = 0.0
            stop.set()
            _heal(cluster, host)
        statuses = [a.status_code if a else None for a, _ in answers]
        tries = [t for _, t in answers]
        after = [(t, ok) for t, ok in probes if t >= cut_at]
        first_failure = next((t for t, ok in after if not ok), None)
        back = next((t for t, ok in after if ok and first_failure is not None and t > first_failure), None)
        outage = (back - cut_at) if back is not None else 0.0
        refreshes = state.refresh_calls - before
        print(f"\nfailover: primary {old_primary} cut; Sentinel promoted {promoted}; clients saw "
              f"{outage:.2f} s of 503 (probe every 100 ms: {sum(not ok for _, ok in after)} failed of {len(after)}); "
              f"storm {statuses.count(200)}/{len(statuses)} served, most tries {max(tries)}; "
              f"{refreshes} refresh(es) at the auth server for {len(people)} people")
        assert statuses == [200] * len(statuses), statuses
        assert refreshes == len(people)  # exactly one per person, however many replicas and retries
        assert outage < 30
        for name in people:  # nobody logged out: the rotated login survived the failover and still works
            login = await _login_of(cluster, name)
            assert login.version == versions[name] + 1 and not login.needs_login
            assert (await _ask(client, cluster.url, keys[name], "after")).status_code == 200
        assert state.refresh_calls - before == len(people)  # no second refresh with a lost token
    cluster.wait_replicas_online(2)  # the old primary came back as a replica of the new one
    # The operator view names the new primary: /readyz on every replica, and `subrelay status`.
    for replica in cluster.replicas:
        view = httpx.get(replica.url + "/readyz", timeout=10).json()["redis"]
        assert view["mode"] == "sentinel" and view["primary"] == promoted and view["role"] == "primary"
        assert view["writable"] is True and view["durable"] is True
        assert view["replicas"] and promoted not in {r["address"] for r in view["replicas"]}  # (the old one may
        # still be resyncing: a replica being re-attached is not listed until it is connected again)
    status = cluster.cli("status", "--json")
    assert status.stdout and '"redis"' in status.stdout, status.stderr
    import json

    redis_view = json.loads(status.stdout)["redis"]
    assert redis_view["primary"] == promoted and "ha-redis-password" not in status.stdout


async def test_a_limit_of_n_admits_at_most_n_across_a_failover(net_cluster: NetCluster):
    cluster = net_cluster
    limit = 6
    key = _add_user(cluster, "metered", "--rpm", str(limit))
    await _put_login(cluster, "metered")
    async with httpx.AsyncClient(timeout=30) as client:
        first = [await _ask(client, cluster.url, key, f"before {n}") for n in range(limit // 2)]
        assert [a.status_code for a in first] == [200] * (limit // 2)
        host, old_primary = _cut_primary(cluster)
        try:
            answers = await asyncio.gather(*(_until_served(client, cluster.url, key, f"after {n}")
                                             for n in range(limit * 2)))
        finally:
            _heal(cluster, host)
        statuses = [a.status_code if a else None for a, _ in answers]
        admitted = len(first) + statuses.count(200)
        print(f"\nrpm {limit} across a failover (primary {old_primary} cut): {admitted} admitted, "
              f"{statuses.count(429)} refused with 429")
        assert admitted <= limit
        assert set(statuses) <= {200, 429}
        assert statuses.count(200) == limit - len(first)  # the rest of the minute, not fewer
    cluster.wait_replicas_online(2)


async def test_a_primary_cut_off_from_its_replicas_only_stops_taking_writes_within_the_lag_bound(
        net_cluster: NetCluster):
    """The partition that loses data: the primary loses its replicas and sentinels but not subrelay. It keeps
    taking the writes that are not WAITed (reservations, usage) until ``min-replicas-max-lag`` runs out; the
    sentinels promote a replica meanwhile, and those writes are dropped when the old primary rejoins. The
    bound: what subrelay admitted in that window. subrelay must then follow the new primary unhealed.

    Not in CI yet (SUBRELAY_TEST_PARTIAL_PARTITION=1 runs it): it passed 3 runs of 5 on a loaded machine; in the
    other 2 the old primary kept taking writes for ~15 s instead of ~4 s and subrelay was not served again
    before the heal. Not understood yet (docs/redis-ha.md says so)."""
    if not os.environ.get("SUBRELAY_TEST_PARTIAL_PARTITION"):
        pytest.skip("*** the partial-partition test is not yet reliable (2 of 5 runs failed): "
                    "SUBRELAY_TEST_PARTIAL_PARTITION=1 runs it ***")
    cluster = net_cluster
    limit, max_lag = 40, 2  # the SentinelSet's min-replicas-max-lag
    key = _add_user(cluster, "lagged", "--rpm", str(limit))
    await _put_login(cluster, "lagged")
    # Sentinel will not start another failover of a master within 2 x failover-timeout (3 s here) of the
    # last one (the previous test's): let that pass, and every sentinel agree, before the cut.
    time.sleep(6.5)
    _wait(lambda: len({s.primary() for s in cluster.redis.sentinels}) == 1, "the sentinels agreeing", 20)
    host = cluster.primary_host()
    old_primary = cluster.primary()
    seen: list[tuple[float, int]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        cluster.net.block(host, [h for h in REDIS_HOSTS if h != host])
        cut_at = time.monotonic()
        try:
            while time.monotonic() - cut_at < 40:
                started = time.monotonic()
                try:
                    status = (await _ask(client, cluster.url, key, "lag")).status_code
                except httpx.TransportError:
                    status = 0
                seen.append((started - cut_at, status))
                failed_before = any(s != 200 for _, s in seen)
                if failed_before and status == 200:
                    break  # served again, the old primary still cut off: subrelay followed the new one
                await asyncio.sleep(0.3)
            followed = seen[-1][1] == 200 and any(s != 200 for _, s in seen)
            promoted = cluster.primary(exclude=(host,))  # its own sentinel is cut off with it, and stale
        finally:
            _heal(cluster, host)
        first_failure = next(t for t, s in seen if s != 200)
        window = [t for t, s in seen if s == 200 and t < first_failure]
        back = seen[-1][0]
        cluster.wait_replicas_online(2)
        answers = await asyncio.gather(*(_ask(client, cluster.url, key, f"fill {n}") for n in range(limit)))
        later = [a.status_code for a in answers]
        admitted = len([s for _, s in seen if s == 200]) + later.count(200)
        print(f"\nprimary {old_primary} cut from its replicas only: subrelay admitted {len(window)} request(s) there "
              f"in the first {max(window, default=0):.2f} s, then 503 from {first_failure:.2f} s; served by "
              f"{promoted} from {back:.2f} s (unhealed); rpm {limit}: {admitted} admitted in the minute "
              f"(bound {limit} + {len(window)} lost with the old primary)")
        assert followed, seen
        assert promoted != old_primary
        # A replica ACKs every second and the primary recounts its good replicas once a second (replicationCron):
        # writes stop between max-lag + 1 and max-lag + 2 seconds after the cut (4.3 s measured with max-lag 2).
        assert max(window, default=0) <= max_lag + 3
        assert admitted <= limit + len(window)
        assert set(later) <= {200, 429}
    cluster.wait_replicas_online(2)
