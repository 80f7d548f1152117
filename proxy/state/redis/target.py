"""Which Redis subrelay talks to, read from the environment without importing redis-py.

Three shapes, one setting each way:

* one server: ``SUBRELAY_REDIS_URL=redis://host:6379/0`` (``rediss://`` for TLS, ``unix://`` for a socket);
* Sentinel: ``SUBRELAY_REDIS_URL=redis+sentinel://s1:26379,s2:26379,s3:26379/subrelay`` (the path names the
  master; ``rediss+sentinel://`` for TLS to the data nodes), or ``SUBRELAY_REDIS_SENTINELS=s1:26379,s2:26379``
  with ``SUBRELAY_REDIS_MASTER`` (default ``subrelay``), which :func:`proxy.config.settings.redis_url` turns
  into that URL when the settings are read;
* Redis Cluster: ``SUBRELAY_REDIS_URL=redis+cluster://n1:6379,n2:6379`` (``rediss+cluster://`` for TLS).

Passwords may sit in the URL (``redis://user:password@host``) or, better for a secret store, in
``SUBRELAY_REDIS_USERNAME`` / ``SUBRELAY_REDIS_PASSWORD`` (the data nodes) and ``SUBRELAY_REDIS_SENTINEL_USERNAME``
/ ``SUBRELAY_REDIS_SENTINEL_PASSWORD`` (the sentinels); the environment wins over the URL. A TLS CA file is
``SUBRELAY_REDIS_CA_FILE`` or the URL's ``ssl_ca_certs=``. :func:`describe` is what logs and the operator view
may show: the hosts and the shape, never a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from proxy.errors import ConfigError

DEFAULT_MASTER = "subrelay"
_SCHEMES = {"redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
            "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
            "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True)}


@dataclass(frozen=True)
class RedisTarget:
    kind: str  # "single", "sentinel" or "cluster"
    url: str  # the URL as given (a single server's is handed to redis-py as it is)
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels, or the cluster's startup nodes
    master: str = DEFAULT_MASTER
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: tuple[tuple[str, str], ...] = ()  # ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_check_hostname


def parse_target(url: str, env: Mapping[str, str]) -> RedisTarget:
    """``url`` read into a :class:`RedisTarget`, with the passwords and CA from ``env`` applied."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigError("SUBRELAY_REDIS_URL must start with redis://, rediss:// (TLS), unix://, "
                          "redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://")
    kind, tls = _SCHEMES[scheme]
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    username = _env(env, "SUBRELAY_REDIS_USERNAME") or (unquote(parts.username) if parts.username else None)
    password = _env(env, "SUBRELAY_REDIS_PASSWORD") or (unquote(parts.password) if parts.password else None)
    tls_options = {name: query[name] for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
                   if name in query}
    if _env(env, "SUBRELAY_REDIS_CA_FILE"):
        tls_options["ssl_ca_certs"] = _env(env, "SUBRELAY_REDIS_CA_FILE")
    if kind == "single":
        return RedisTarget("single", url, tls, username=username, password=password,
                           tls_options=tuple(sorted(tls_options.items())))
    hosts = _hosts(parts.netloc.rsplit("@", 1)[-1], 26379 if kind == "sentinel" else 6379)
    segments = [s for s in parts.path.split("/") if s]
    master, db = DEFAULT_MASTER, 0
    if kind == "sentinel":
        master = unquote(segments[0]) if segments else DEFAULT_MASTER
        db = _db(segments[1] if len(segments) > 1 else query.get("db", "0"))
    elif segments and segments != ["0"]:
        raise ConfigError("Redis Cluster has only database 0: drop the path from SUBRELAY_REDIS_URL")
    if not master or len(master) > 100 or any(c.isspace() for c in master):
        raise ConfigError("The Sentinel master name must be 1-100 characters without spaces")
    return RedisTarget(kind, url, tls, hosts, master, db, username, password,
                       _env(env, "SUBRELAY_REDIS_SENTINEL_USERNAME") or query.get("sentinel_username"),
                       _env(env, "SUBRELAY_REDIS_SENTINEL_PASSWORD") or query.get("sentinel_password"),
                       tuple(sorted(tls_options.items())))


def describe(target: RedisTarget) -> str:
    """The target for a log line or the operator view: shape and hosts, never a password."""
    if target.kind == "single":
        parts = urlsplit(target.url)
        where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        return f"{'tls ' if target.tls else ''}redis {where}"
    hosts = ",".join(f"{host}:{port}" for host, port in target.hosts)
    if target.kind == "sentinel":
        return f"{'tls ' if target.tls else ''}sentinel {hosts} master {target.master}"
    return f"{'tls ' if target.tls else ''}cluster {hosts}"


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not sep:
            host, port = item, str(default_port)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"Cannot read the Redis host {item[:60]!r}: expected host:port")
        hosts.append((host, int(port)))
    if not hosts:
        raise ConfigError("The Redis URL names no host (expected host:port[,host:port…])")
    return tuple(hosts)


def _db(raw: str) -> int:
    if not raw.isdigit() or int(raw) > 10000:
        raise ConfigError(f"The Redis database must be a number, got {raw[:20]!r}")
    return int(raw)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None
