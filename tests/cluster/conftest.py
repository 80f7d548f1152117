"""A small cluster on this machine: one Redis, three ``subrelay serve`` replicas sharing it,
a real HAProxy in front, and the mock Codex + auth server behind. Every process is started on a free
loopback port and stopped by its own PID.

The suite runs once per Redis shape (issue 32): one redis-server with a password; a three-primary Redis
Cluster made by ``redis-cli --cluster create``; and one redis-server on TLS only (a CA made by the test)
whose ``subrelay`` ACL user may run only what subrelay needs, on its own keys."""

from __future__ import annotations

import contextlib
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

from proxy.team.secretbox import new_secret
from tests.conftest import write_auth_file
from tests.mock_upstream import MockCodexServer, ServerThread
from tests.redis_server import REDIS_SERVER, SKIP_REASON, RedisServer, free_port

HAPROXY = shutil.which("haproxy")
SECRET_KEY = new_secret()  # 32 random bytes, URL-safe base64: the same on every replica
REDIS_TIMEOUT = 1.0


def _wait(check, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    log_path: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(self.port)],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def wait_ready(self) -> None:
        def up() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: {self.log()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        _wait(up, f"replica {self.name}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


@dataclass
class Cluster:
    redis: RedisServer
    mock: MockCodexServer
    replicas: list[Replica]
    haproxy_port: int
    base_env: dict[str, str]
    workdir: str
    haproxy: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.haproxy_port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """``subrelay …`` against the cluster's Redis (what an admin runs on any host)."""
        return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=30,
                              env=self.base_env)


def _haproxy_config(port: int, replicas: list[Replica]) -> str:
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check inter 500ms fall 2 rise 1" for r in replicas)
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 2s
    retries 2
    option redispatch

frontend subrelay
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
    http-response set-header X-Subrelay-Replica %s
{servers}
"""


def _redis(shape: str):
    if shape == "cluster":
        from tests.redis_ha import REDIS_CLI, ClusterSet

        if REDIS_CLI is None:
            pytest.skip("redis-cli is not installed (it comes with redis-server)")
        return ClusterSet().start()
    if shape == "tls-acl":
        from tests.redis_ha import TlsAclServer

        return TlsAclServer().start()
    return RedisServer(password="cluster-redis-password").start()


SHAPES = ("single", "cluster", "tls-acl")


def pytest_generate_tests(metafunc) -> None:
    """The cluster suite (test_replicas.py) runs on every Redis shape; the other modules on one server
    (what they test does not depend on the shape, and each shape costs a cluster start: CI time)."""
    if "cluster" in metafunc.fixturenames:
        shapes = SHAPES if metafunc.module.__name__.endswith(".test_replicas") else ("single",)
        metafunc.parametrize("cluster", shapes, indirect=True, scope="module")


@pytest.fixture(scope="module")
def cluster(request) -> Iterator[Cluster]:
    with start_cluster(shape=getattr(request, "param", "single")) as started:
        yield started


@contextlib.contextmanager
def start_cluster(extra_env: dict[str, str] | None = None, shape: str = "single") -> Iterator[Cluster]:
    """Redis (of ``shape``), three replicas (with ``extra_env``, e.g. a SUBRELAY_CONFIG) and HAProxy,
    all stopped after."""
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run does it)")
    workdir = tempfile.mkdtemp(prefix="subrelay-cluster-")
    redis = _redis(shape)
    mock = MockCodexServer()
    mock.state.record = True
    thread = ServerThread(mock).start()
    auth_path = os.path.join(workdir, "auth.json")
    write_auth_file(auth_path, mock.state.auth_file())
    base_env = {**os.environ, "SUBRELAY_REDIS_URL": redis.url, "SUBRELAY_SECRET_KEY": SECRET_KEY,
                "SUBRELAY_USER_MAX_CONCURRENT": "1000",  # the storm test is one person's 300 requests
                "SUBRELAY_REDIS_TIMEOUT": str(REDIS_TIMEOUT), "SUBRELAY_CODEX_BASE_URL": f"{thread.url}/backend-api/codex",
                "SUBRELAY_AUTH_BASE_URL": thread.url, "CODEX_AUTH_PATH": auth_path, "SUBRELAY_LOG_LEVEL": "info",
                "SUBRELAY_STATE_DIR": os.path.join(workdir, "admin-state")}
    for name in ("SUBRELAY_API_KEYS", "SUBRELAY_CONFIG", "SUBRELAY_WORKERS", "SUBRELAY_PORT"):
        base_env.pop(name, None)
    base_env.update(extra_env or {})
    replicas = [Replica(f"r{n}", free_port(), {**base_env, "SUBRELAY_STATE_DIR": os.path.join(workdir, f"state-r{n}")},
                        os.path.join(workdir, f"r{n}.log")) for n in (1, 2, 3)]
    for replica in replicas:
        replica.start()
    cluster = Cluster(redis, mock, replicas, free_port(), base_env, workdir)
    cluster.extra["mock_url"] = thread.url
    try:
        for replica in replicas:
            replica.wait_ready()
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as handle:
            handle.write(_haproxy_config(cluster.haproxy_port, replicas))
        cluster.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", config], stdout=subprocess.DEVNULL,
                                           stderr=open(os.path.join(workdir, "haproxy.log"), "wb"))

        def balanced() -> bool:
            try:
                return httpx.get(cluster.url + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        _wait(balanced, "haproxy")
        time.sleep(1.0)  # every server's first health check has passed (inter 300ms, rise 1)
        yield cluster
    finally:
        if cluster.haproxy is not None and cluster.haproxy.poll() is None:
            os.kill(cluster.haproxy.pid, signal.SIGTERM)
            cluster.haproxy.wait(timeout=10)
        for replica in replicas:
            replica.stop()
        thread.stop()
        redis.close()
        shutil.rmtree(workdir, ignore_errors=True)
