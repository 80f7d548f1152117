"""Redis topologies for the HA tests, built from Debian's redis-server: a primary with replicas and
sentinels, a three-primary Redis Cluster (``redis-cli --cluster create``), and a TLS server with a CA made
here (python cryptography) and an ACL user that may run only what subrelay needs.

Each node is a process started by PID on a free port (on loopback, or on an address inside a network
namespace: ``netns`` runs it through ``ip netns exec``) and stopped by that PID. Each topology has the
interface the cluster suite uses: ``url``, ``stop(kill=)``, ``start()``, ``close()``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from tests.redis_server import REDIS_SERVER, free_port

REDIS_CLI = shutil.which("redis-cli")
PASSWORD = "ha-redis-password"
# What subrelay runs, and nothing else: its scripts, the reads and writes around them, WAIT for the
# must-survive writes, INFO replication for the operator view, and the cluster's slot map. Keys: its prefix.
ACL_COMMANDS = ("-@all +get +set +del +exists +mget +incr +incrby +decrby +expire +pexpire +smembers +sadd +srem "
                "+hget +hset +hdel +hgetall +hincrby +zadd +zrem +zrange +zrangebyscore +zcount +zcard +zscore "
                "+zremrangebyscore "
                "+eval +evalsha +script|load +script|exists +multi +exec +discard +ping +wait +info +time "
                "+client|setname +cluster|slots +cluster|shards +cluster|nodes +readonly +hello")


def cluster_port() -> int:
    """A free port a cluster node may use: Redis Cluster also listens on port + 10000 (the bus)."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _popen(args: list[str], netns: str | None, log: str) -> subprocess.Popen:
    command = ["ip", "netns", "exec", netns, *args] if netns else args
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen | None, kill: bool = False) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Tls:
    """A CA and one server certificate (for 127.0.0.1 and the given addresses), written to ``dir``."""

    def __init__(self, directory: str, addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "subrelay test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses] + [x509.DNSName("localhost")]
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(ca_key, hashes.SHA256()))
        self.ca = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "redis.pem")
        self.key = os.path.join(directory, "redis.key")
        with open(self.ca, "wb") as out:
            out.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(self.cert, "wb") as out:
            out.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(self.key, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        os.chmod(self.key, 0o600)


class Node:
    """One redis-server (AOF, ``appendfsync always``) with its own directory."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, netns: str | None = None,
                 password: str | None = PASSWORD, extra: tuple[str, ...] = (), tls: Tls | None = None,
                 acl_file: str | None = None, root: str | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.host, self.port, self.netns, self.password = host, port or free_port(), netns, password
        self.extra, self.tls, self.acl_file = extra, tls, acl_file
        self.dir = tempfile.mkdtemp(prefix="subrelay-ha-", dir=root)
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def args(self) -> list[str]:
        args = [REDIS_SERVER, "--bind", self.host, "--dir", self.dir, "--appendonly", "yes", "--appendfsync",
                "always", "--save", "", "--daemonize", "no", "--maxmemory-policy", "noeviction",
                "--logfile", os.path.join(self.dir, "redis.log"), "--protected-mode", "no", *self.extra]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                     "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no",
                     "--tls-replication", "yes"]
        else:
            args += ["--port", str(self.port)]
        if self.acl_file:
            args += ["--aclfile", self.acl_file]
        elif self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    def start(self) -> "Node":
        self.process = _popen(self.args(), self.netns, os.path.join(self.dir, "stdout.log"))
        deadline = time.monotonic() + 15
        while self.cli("PING") != "PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {self.address}: {self.log()[-1500:]}")
            time.sleep(0.05)
        return self

    def cli(self, *command: str, timeout: float = 5.0) -> str:
        """One command through redis-cli (in the node's namespace); its output, or '' on failure."""
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not installed")
        args = [REDIS_CLI, "-h", self.host, "-p", str(self.port), "--no-auth-warning"]
        if self.acl_file:
            args += ["--user", "admin", "--pass", PASSWORD]
        elif self.password:
            args += ["-a", self.password]
        if self.tls:
            args += ["--tls", "--cacert", self.tls.ca]
        args += list(command)
        if self.netns:
            args = ["ip", "netns", "exec", self.netns, *args]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.strip()

    def info(self, section: str = "replication") -> dict[str, str]:
        lines = self.cli("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def stop(self, *, kill: bool = False) -> None:
        _stop(self.process, kill)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelNode:
    """One redis-sentinel watching ``master`` with short timeouts (a failover in a few seconds)."""

    def __init__(self, primary: Node, *, host: str = "127.0.0.1", netns: str | None = None, quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 3000, master: str = "subrelay",
                 root: str | None = None) -> None:
        self.host, self.port, self.netns, self.master = host, free_port(), netns, master
        self.dir = tempfile.mkdtemp(prefix="subrelay-sentinel-", dir=root)
        self.config = os.path.join(self.dir, "sentinel.conf")
        with open(self.config, "w") as out:
            out.write(f"port {self.port}\nbind {host}\ndir {self.dir}\nprotected-mode no\n"
                      f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                      f"sentinel monitor {master} {primary.host} {primary.port} {quorum}\n"
                      f"sentinel auth-pass {master} {primary.password}\n"
                      f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
                      f"sentinel failover-timeout {master} {failover_timeout_ms}\n"
                      f"sentinel parallel-syncs {master} 1\n")
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "SentinelNode":
        self.process = _popen([REDIS_SERVER, self.config, "--sentinel"], self.netns,
                              os.path.join(self.dir, "stdout.log"))
        deadline = time.monotonic() + 15
        while not self.primary():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-sentinel did not start on {self.address}")
            time.sleep(0.05)
        return self

    def primary(self) -> str:
        """The address this sentinel names as the primary ('' when it cannot be asked)."""
        args = [REDIS_CLI, "-h", self.host, "-p", str(self.port), "SENTINEL", "get-master-addr-by-name", self.master]
        if self.netns:
            args = ["ip", "netns", "exec", self.netns, *args]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=5).stdout.split()
        except subprocess.TimeoutExpired:
            return ""
        return ":".join(out) if len(out) == 2 else ""

    def stop(self, *, kill: bool = False) -> None:
        _stop(self.process, kill)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """A primary, ``replicas`` replicas and three sentinels (quorum 2). ``min_replicas`` sets
    ``min-replicas-to-write`` on every data node (with ``min-replicas-max-lag`` ``max_lag`` seconds)."""

    def __init__(self, *, hosts: list[tuple[str, str | None]] | None = None, min_replicas: int = 1,
                 max_lag: int = 2, root: str | None = None) -> None:
        hosts = hosts or [("127.0.0.1", None)] * 3  # (address, netns) of each data node + sentinel
        durability = ("--min-replicas-to-write", str(min_replicas), "--min-replicas-max-lag", str(max_lag),
                      "--repl-timeout", "5")
        self.nodes = [Node(host=host, netns=netns, extra=durability, root=root) for host, netns in hosts]
        primary = self.nodes[0]
        for node in self.nodes[1:]:
            node.extra = (*node.extra, "--replicaof", primary.host, str(primary.port))
        self.sentinels = [SentinelNode(primary, host=host, netns=netns, root=root) for host, netns in hosts]

    @property
    def url(self) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{hosts}/subrelay"

    def start(self) -> "SentinelSet":
        for node in self.nodes:
            node.start()
        self.wait_replicated(len(self.nodes) - 1)
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_sentinels_know(len(self.nodes) - 1)
        return self

    def wait_replicated(self, count: int, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            info = self.node_at(self.primary_address()).info() if self.primary_address() else {}
            online = sum(1 for k, v in info.items() if k.startswith("slave") and "state=online" in v)
            if online >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {online} replica(s) online")
            time.sleep(0.1)

    def wait_sentinels_know(self, replicas: int, seconds: float = 20.0) -> None:
        """Every sentinel has found the replicas and the other sentinels (else a failover cannot be voted)."""
        deadline = time.monotonic() + seconds
        for sentinel in self.sentinels:
            while True:
                args = [REDIS_CLI, "-h", sentinel.host, "-p", str(sentinel.port), "SENTINEL", "master", "subrelay"]
                if sentinel.netns:
                    args = ["ip", "netns", "exec", sentinel.netns, *args]
                out = subprocess.run(args, capture_output=True, text=True, timeout=5).stdout.split()
                fields = dict(zip(out[::2], out[1::2]))
                if int(fields.get("num-slaves", 0)) >= replicas and int(fields.get("num-other-sentinels", 0)) >= \
                        len(self.sentinels) - 1:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sentinel {sentinel.address} knows {fields}")
                time.sleep(0.1)

    def primary_address(self) -> str:
        for sentinel in self.sentinels:
            if sentinel.process is not None:
                found = sentinel.primary()
                if found:
                    return found
        return self.nodes[0].address

    def node_at(self, address: str) -> Node:
        return next(node for node in self.nodes if node.address == address)

    def stop(self, *, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for node in self.nodes:
            node.close()


class ClusterSet:
    """Three primaries (no replicas) joined by ``redis-cli --cluster create``; stop/start stops and starts
    every node (nodes.conf and the AOF bring the cluster back as it was)."""

    def __init__(self, *, masters: int = 3, root: str | None = None) -> None:
        self.nodes = [Node(port=cluster_port(), extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                  "--cluster-require-full-coverage", "yes"), root=root) for _ in range(masters)]
        for node in self.nodes:
            node.extra = (*node.extra, "--cluster-config-file", os.path.join(node.dir, "nodes.conf"))

    @property
    def url(self) -> str:
        return f"redis+cluster://:{PASSWORD}@" + ",".join(node.address for node in self.nodes)

    def start(self) -> "ClusterSet":
        fresh = not os.path.exists(os.path.join(self.nodes[0].dir, "nodes.conf"))
        for node in self.nodes:
            node.start()
        if fresh:
            created = subprocess.run([REDIS_CLI, "-a", PASSWORD, "--no-auth-warning", "--cluster", "create",
                                      *(node.address for node in self.nodes), "--cluster-replicas", "0",
                                      "--cluster-yes"], capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-1500:]}{created.stderr}")
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    def stop(self, *, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class TlsAclServer:
    """One redis-server on TLS only, with an ACL file: ``admin`` (the test's) and ``subrelay`` (only
    :data:`ACL_COMMANDS` on keys under its prefix); the default user needs the admin password."""

    def __init__(self, *, root: str | None = None, prefix: str = "sr") -> None:
        self.dir = tempfile.mkdtemp(prefix="subrelay-tls-", dir=root)
        self.tls = Tls(self.dir)
        self.acl = os.path.join(self.dir, "users.acl")
        self.user_password = "subrelay-acl-password"
        with open(self.acl, "w") as out:
            # Not ``user default off``: Redis 7.0 replays the AOF as the default user, and with it off every
            # MULTI/EXEC (every script's effects) is refused on restart: the data would be lost (seen here).
            out.write(f"user default on >{PASSWORD} ~* &* +@all\nuser admin on >{PASSWORD} ~* &* +@all\n"
                      f"user subrelay on >{self.user_password} resetkeys ~{{{prefix}}}:* resetchannels "
                      f"{ACL_COMMANDS}\n")
        self.node = Node(tls=self.tls, acl_file=self.acl, root=root)

    @property
    def url(self) -> str:
        return (f"rediss://subrelay:{self.user_password}@127.0.0.1:{self.node.port}/0?ssl_ca_certs={self.tls.ca}")

    def start(self) -> "TlsAclServer":
        self.node.start()
        return self

    def stop(self, *, kill: bool = False) -> None:
        self.node.stop(kill=kill)

    def close(self) -> None:
        self.node.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_handshake_ok(host: str, port: int, ca: str) -> bool:
    """Whether a TLS client trusting only ``ca`` completes a handshake (the server's certificate is the CA's)."""
    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection((host, port), timeout=2) as raw, context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False
