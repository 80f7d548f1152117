"""deploy/ run for real (issue 31): the image built from deploy/Dockerfile and run, then both compose
profiles brought up from deploy/compose.yaml and driven end to end, in a Docker engine this module starts
itself (its own data and exec roots, no iptables, no bridge, no forwarding: nothing changes on the host)
and stops by its PID when done.

Without an image registry the base image is made with debootstrap (Debian's python3 in a venv at
/usr/local, the layout of python:*-slim) and passed as the Dockerfile's BASE_IMAGE; the machine's extra CA
certificates go into that *test* base only. Redis and HAProxy are local stand-ins built from Debian's
packages under the names compose.yaml uses. The mock upstream runs beside them (in the subrelay image).

Everything skips, loudly, when no engine can run here (not root, no dockerd/debootstrap, the daemon does
not start). SUBRELAY_TEST_DOCKER_CACHE=DIR keeps the base rootfs and the engine's data root in DIR between
local runs (CI leaves it unset and builds everything from scratch).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.team.secretbox import new_secret
from tests.conftest import write_auth_file
from tests.deploy.test_deploy import render_kustomization
from tests.docs.deploy_doc import command_with
from tests.mock_upstream import MockCodexServer, ServerThread

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
CACHE = os.environ.get("SUBRELAY_TEST_DOCKER_CACHE")
BASE_TAG = "local/debian-python:bookworm"
IMAGE = "subrelay:ci"
KEY = "ci-client-key-" + "k" * 24
TIMINGS: dict[str, float] = {}  # step -> seconds, printed at the end (the closing note quotes them)


def _skip(reason: str) -> None:
    """Skip loudly: a warning in the summary as well as the skip reason."""
    message = f"container tests skipped: {reason}"
    warnings.warn(message)
    print(f"\n*** {message} ***")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, seconds: float = 90.0, every: float = 0.5):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``seconds``."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, subprocess.SubprocessError) as error:
            last = error
        time.sleep(every)
    raise AssertionError(f"{what}: not within {seconds:.0f} s (last error: {last!r})")


# -- the engine -------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A dockerd of our own: its socket, data and exec roots under ``root``."""

    dockerd: str
    docker: str
    compose: str | None
    root: Path
    keep_data: bool
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.root}/docker.sock"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SUBRELAY_", "COMPOSE_"))}
        return {**env, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0", **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 600, input: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.docker, *args], capture_output=True, timeout=timeout, input=input,
                                env=env or self.env())
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])}… failed: {result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def out(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout.decode().strip()

    def start(self) -> None:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.dockerd, "--data-root", str(data), "--exec-root", str(self.root / "exec"), "-H", self.host,
             "--pidfile", str(self.root / "dockerd.pid"), "--storage-driver", "overlay2",
             "--iptables=false", "--ip-forward=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while self.run("info", check=False, timeout=30).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                self.stop()
                _skip(f"dockerd did not start here:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Remove what ran, stop dockerd by its PID, unmount what it left, remove its roots."""
        if self.process is not None and self.process.poll() is None:
            ids = self.out("ps", "-aq", check=False, timeout=60).split()
            if ids:
                self.run("rm", "-fv", *ids, check=False, timeout=120)
            self.run("network", "prune", "-f", check=False, timeout=60)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.root))]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if not self.keep_data:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            shutil.rmtree(self.root / "exec", ignore_errors=True)


def _tool(name: str, *prefer: str) -> str | None:
    for directory in prefer:  # the client Debian ships beside its dockerd, not another one on PATH
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    return shutil.which(name)


def _scratch() -> str:
    """Where the engine's roots and the base rootfs go: /dev/shm when it is a roomy tmpfs (debootstrap's and
    dpkg's fsyncs, the layers and the final removal cost no disk I/O: 2-3x faster on a busy 2-core machine),
    else /var/tmp."""
    try:
        with open("/proc/mounts") as mounts:
            tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts)
        room = shutil.disk_usage("/dev/shm").free
    except OSError:
        return "/var/tmp"
    return "/dev/shm" if tmpfs and room > 4 * 2**30 else "/var/tmp"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if os.geteuid() != 0:
        _skip("dockerd and debootstrap need root (CI runs as root)")
    dockerd = _tool("dockerd", "/usr/sbin", "/usr/bin")
    docker = _tool("docker", "/usr/bin")
    if dockerd is None or docker is None:
        _skip("no dockerd/docker (apt-get install docker.io; .ci/run does it)")
    root = Path(CACHE, "engine") if CACHE else Path(tempfile.mkdtemp(prefix="sr-docker-", dir=_scratch()))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    machine = Engine(dockerd, docker, _tool("docker-compose", "/usr/bin"), root, keep_data=bool(CACHE))
    try:
        machine.start()
        TIMINGS["engine start"] = time.monotonic() - started
        yield machine
    finally:
        machine.stop()
        print("\ncontainer timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def _base_rootfs(workdir: Path) -> Path:
    """A tarball of Debian bookworm minbase with python3 in a venv at /usr/local (cached when asked)."""
    cached = Path(CACHE, "rootfs.tar") if CACHE else None
    if cached and cached.exists():
        return cached
    debootstrap = _tool("debootstrap", "/usr/sbin")
    if debootstrap is None:
        _skip("no debootstrap to make a base image without a registry (apt-get install debootstrap)")
    rootfs = workdir / "rootfs"
    made = subprocess.run([debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                           "bookworm", str(rootfs)], capture_output=True, timeout=900)
    if made.returncode != 0:
        _skip(f"debootstrap failed (no Debian mirror?): {made.stdout.decode(errors='replace')[-800:]}")
    extra = Path("/usr/local/share/ca-certificates")  # the machine's proxy CA: the test base only
    for cert in extra.glob("*.crt") if extra.is_dir() else []:
        shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    for step in (["update-ca-certificates"], ["python3", "-m", "venv", "/usr/local"]):
        subprocess.run(["chroot", str(rootfs), *step], check=True, capture_output=True, timeout=300)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / junk).glob("*"):
            if path.is_file():
                path.unlink()
    tarball = cached or workdir / "rootfs.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True, timeout=300)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory) -> str:
    """deploy/Dockerfile built on the local base, as CI would: only BASE_IMAGE passed."""
    started = time.monotonic()
    if engine.run("image", "inspect", BASE_TAG, check=False).returncode != 0:
        workdir = engine.root / "base"
        workdir.mkdir(exist_ok=True)
        tarball = _base_rootfs(workdir)
        engine.run("import", "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "--change", "ENV LANG=C.UTF-8", str(tarball), BASE_TAG)
        if not CACHE:
            shutil.rmtree(workdir, ignore_errors=True)  # the image holds it now
        TIMINGS["base image (debootstrap + import)"] = time.monotonic() - started
    started = time.monotonic()
    words = command_with("docker build")  # docs/deploy.md's line, plus the local base and host networking
    assert words[:2] == ["docker", "build"] and words[-1] == "." and "deploy/Dockerfile" in words
    args = [str(DEPLOY / "Dockerfile") if w == "deploy/Dockerfile" else IMAGE if w == "subrelay" else w
            for w in words[2:-1]]
    engine.run("build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}", *args,
               "-t", "subrelay:latest", str(ROOT), timeout=900)
    TIMINGS["image build"] = time.monotonic() - started
    return IMAGE


def _image_size(engine: Engine, name: str) -> int:
    return int(engine.out("image", "inspect", "--format", "{{.Size}}", name))


# -- the image on its own ---------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    url: str
    mock: MockCodexServer
    login_dir: Path


@pytest.fixture(scope="module")
def container(engine: Engine, image: str, tmp_path_factory) -> Iterator[Running]:
    """The image run the way the docs say: read-only root, /tmp a tmpfs, no new privileges, the login
    mounted read-only, keys on; host networking (this engine has no bridge) with the mock on loopback."""
    mock = MockCodexServer()
    server = ServerThread(mock).start()
    login_dir = tmp_path_factory.mktemp("login")
    write_auth_file(str(login_dir / "auth.json"), mock.state.auth_file())
    for path in (login_dir, login_dir / "auth.json"):  # the image's user owns its login, as the docs say
        os.chown(path, 10001, 10001)
    port, name = free_port(), "subrelay-ci"
    words = command_with("docker run")  # docs/deploy.md's line, its port, login, name and image swapped
    assert words[:2] == ["docker", "run"] and words[-1] == "subrelay"
    args, doc = [], iter(words[2:-1])
    for word in doc:
        if word == "-p":  # this engine has no bridge: host networking, the port by SUBRELAY_PORT
            assert next(doc).startswith("127.0.0.1:")
            args += ["--network", "host", "-e", "SUBRELAY_HOST=127.0.0.1", "-e", f"SUBRELAY_PORT={port}"]
        elif word == "--name":
            args += [word, name if next(doc) == "subrelay" else "unexpected"]
        else:
            args.append(f"{login_dir}:/data:ro" if word == "~/.codex:/data:ro" else word)
    assert f"{login_dir}:/data:ro" in args and "--read-only" in args and "SUBRELAY_API_KEYS" in args
    engine.run("run", "-d", *args, "--health-interval", "1s", "--health-start-period", "1s",
               "-e", f"SUBRELAY_CODEX_BASE_URL={server.url}/backend-api/codex",
               "-e", f"SUBRELAY_AUTH_BASE_URL={server.url}", "-e", "SUBRELAY_SHUTDOWN_GRACE=20", image,
               env=engine.env(SUBRELAY_API_KEYS=KEY))  # `-e SUBRELAY_API_KEYS` passes the caller's value on
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        wait_for(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, "the container's /healthz", 60)
        TIMINGS["container to /healthz"] = time.monotonic() - started
        yield Running(name, url, mock, login_dir)
    finally:
        logs = engine.run("logs", name, check=False)
        print("\ncontainer log tail:\n" + (logs.stdout + logs.stderr).decode(errors="replace")[-1500:])
        engine.run("rm", "-fv", name, check=False)
        server.stop()


def test_the_image_answers_health_readiness_and_a_request_through_the_mock(engine: Engine, container: Running):
    assert httpx.get(container.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(container.url + "/readyz", timeout=5).status_code == 200
    assert httpx.get(container.url + "/v1/models", timeout=5).status_code == 401  # keys are on
    answer = httpx.post(container.url + "/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {KEY}"},
                        json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hello from a container"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert "hello from a container" in json.dumps(container.mock.state.requests[-1]["body"])
    health = wait_for(lambda: engine.out("inspect", "--format", "{{.State.Health.Status}}", container.name) == "healthy",
                      "the image's HEALTHCHECK", 30)
    assert health


def test_the_image_runs_as_a_non_root_user_on_a_read_only_root_and_login_mount(engine: Engine, container: Running):
    assert engine.out("exec", container.name, "id", "-u") == "10001"
    status = engine.out("exec", container.name, "cat", "/proc/1/status")
    assert "\t10001\t" in next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert "NoNewPrivs:\t1" in status
    for path in ("/data/probe", "/usr/local/probe", "/home/subrelay/probe"):
        attempt = engine.run("exec", container.name, "touch", path, check=False)
        assert attempt.returncode != 0 and b"Read-only file system" in attempt.stderr, path
    assert engine.run("exec", container.name, "touch", "/tmp/probe", check=False).returncode == 0  # the tmpfs
    assert sorted(os.listdir(container.login_dir)) == ["auth.json"]  # nothing was written beside the login
    capabilities = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert capabilities.split()[1] == "0" * 16  # --cap-drop ALL, as the Kubernetes manifests drop them


def test_a_read_only_login_is_used_until_it_expires_then_a_clear_503(engine: Engine, container: Running):
    """docs/deploy.md: mounted read-only, subrelay cannot refresh (its lock file cannot be made) and says so."""
    good = (container.login_dir / "auth.json").read_text()
    headers, body = {"authorization": f"Bearer {KEY}"}, {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    try:
        expired = container.login_dir / "auth.next"
        write_auth_file(str(expired), container.mock.state.auth_file(expires_in=-600))
        os.chown(expired, 10001, 10001)
        os.replace(expired, container.login_dir / "auth.json")  # what `codex login` on the host does
        answer = wait_for(lambda: (r := httpx.post(container.url + "/v1/chat/completions", json=body, headers=headers,
                                                   timeout=30)).status_code == 503 and r, "a 503 for the expired login", 30)
        error = answer.json()["error"]
        assert error["code"] == "credential_lock_unavailable" and "/data/auth.json.lock" in error["message"], error
        assert sorted(os.listdir(container.login_dir)) == ["auth.json"]
    finally:
        restored = container.login_dir / "auth.next"
        restored.write_text(good)
        os.chown(restored, 10001, 10001)
        os.replace(restored, container.login_dir / "auth.json")
    wait_for(lambda: httpx.post(container.url + "/v1/chat/completions", json=body, headers=headers,
                                timeout=30).status_code == 200, "the container served again with a valid login", 30)


def test_the_kubernetes_manifests_match_what_the_image_does(engine: Engine, container: Running):
    """Probes, security context, port, volumes and resources as the manifests say, checked on the container."""
    config = json.loads(engine.out("image", "inspect", "--format", "{{json .Config}}", IMAGE))
    env = dict(item.split("=", 1) for item in config["Env"])
    for directory in (DEPLOY / "kubernetes", DEPLOY / "kubernetes" / "replicas"):
        deployment = next(d for d in render_kustomization(directory) if d["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        spec = pod["containers"][0]
        assert str(pod["securityContext"]["runAsUser"]) == config["User"] == "10001"
        assert spec["ports"][0]["containerPort"] == int(env["SUBRELAY_PORT"]) == 8787
        mounts = {m["mountPath"] for m in spec["volumeMounts"]}
        assert "/tmp" in mounts  # the only path written on a read-only root
        if "login" in {m["name"] for m in spec["volumeMounts"]}:
            assert env["CODEX_HOME"] in mounts
        for probe in ("readinessProbe", "livenessProbe"):
            path = spec[probe]["httpGet"]["path"]
            assert httpx.get(container.url + path, timeout=5).status_code == 200, (directory, probe, path)
        assert pod["terminationGracePeriodSeconds"] > 15  # longer than subrelay's own drain below
        memory = engine.out("stats", "--no-stream", "--format", "{{.MemUsage}}", container.name).split("/")[0].strip()
        used = _bytes(memory)
        limit = _bytes(spec["resources"]["limits"]["memory"])
        print(f"\ncontainer memory after a request: {memory} (request {spec['resources']['requests']['memory']},"
              f" limit {spec['resources']['limits']['memory']})")
        assert used < limit / 2


def _bytes(text: str) -> float:
    units = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kB": 1e3, "MB": 1e6,
             "GB": 1e9, "B": 1}
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def test_sigterm_lets_a_stream_in_flight_finish_then_the_container_exits_0(engine: Engine, container: Running):
    state = container.mock.state
    state.delta_count, state.inter_delta_delay = 20, 0.1  # a stream of ~2 s
    result: dict[str, object] = {}

    def stream() -> None:
        body = {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "drain me"}]}
        with httpx.stream("POST", container.url + "/v1/chat/completions", json=body, timeout=60,
                          headers={"authorization": f"Bearer {KEY}"}) as response:
            result["status"] = response.status_code
            text = b""
            for chunk in response.iter_bytes():
                text += chunk
                result["started"] = True
            result["text"] = text

    reader = threading.Thread(target=stream)
    reader.start()
    wait_for(lambda: result.get("started"), "the stream's first bytes", 30, every=0.05)
    stopped = time.monotonic()
    engine.run("kill", "--signal", "TERM", container.name)
    reader.join(timeout=60)
    exit_code = wait_for(lambda: engine.out("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                                            container.name).startswith("exited") and
                         engine.out("inspect", "--format", "{{.State.ExitCode}}", container.name), "exit", 30)
    print(f"\nSIGTERM: stream finished and the container exited {exit_code} after {time.monotonic() - stopped:.1f} s")
    assert result["status"] == 200 and bytes(result["text"]).rstrip().endswith(b"data: [DONE]")
    assert exit_code == "0"
    assert state.finished_streams >= 1


def test_the_image_size_is_said_and_small(engine: Engine, image: str):
    total, base = _image_size(engine, image), _image_size(engine, BASE_TAG)
    print(f"\nimage {image}: {total / 1e6:.0f} MB in all, {(total - base) / 1e6:.0f} MB on top of the "
          f"{base / 1e6:.0f} MB debootstrap base (python:3.11.7-slim-bookworm is about 130 MB)")
    assert total - base < 120e6  # subrelay, its dependencies and the user: no compilers, no caches


# -- compose ----------------------------------------------------------------------------------------

STANDINS = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# Stand-ins for redis:7.2-bookworm and haproxy:2.8, from Debian's packages (no image registry here).
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      redis-server haproxy >/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /data /usr/local/etc/haproxy
WORKDIR /data
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""

MOCK = """\
import uvicorn
from tests.mock_upstream import MockCodexServer
uvicorn.run(MockCodexServer(), host="0.0.0.0", port=8900, log_level="warning", access_log=False)
"""


@pytest.fixture(scope="module")
def standins(engine: Engine, image: str, tmp_path_factory) -> None:
    if engine.compose is None:
        _skip("no docker-compose (apt-get install docker-compose; .ci/run does it)")
    if engine.run("image", "inspect", "redis:7.2-bookworm", "haproxy:2.8", check=False).returncode == 0:
        return
    started = time.monotonic()
    context = tmp_path_factory.mktemp("standins")
    (context / "Dockerfile").write_text(STANDINS)
    engine.run("build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", "redis:7.2-bookworm",
               "-t", "haproxy:2.8", str(context), timeout=900)
    TIMINGS["redis/haproxy stand-ins"] = time.monotonic() - started


@dataclass
class Project:
    """One compose project from deploy/compose.yaml plus a test override (the mock, faster checks)."""

    engine: Engine
    name: str
    files: list[Path]
    env: dict[str, str]
    mock_url: str
    env_file: Path | None = None

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [self.engine.compose, "-p", self.name]
        if self.env_file is not None:
            command += ["--env-file", str(self.env_file)]
        for file in self.files:
            command += ["-f", str(file)]
        result = subprocess.run(command + list(args), capture_output=True, timeout=timeout,
                                env=self.engine.env(**self.env))
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed: {result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def logs(self) -> str:
        result = self.compose("logs", "--no-color", "--tail", "40", check=False)
        return (result.stdout + result.stderr).decode(errors="replace")


def _project(engine: Engine, workdir: Path, name: str, env: dict[str, str], override: dict,
             env_file: Path | None = None) -> Project:
    mock_port = free_port()
    override = {"version": "3.9", **override}
    override.setdefault("services", {})["mock"] = {
        "image": IMAGE, "entrypoint": ["python", "-c", MOCK], "working_dir": "/src",
        "volumes": [f"{ROOT / 'tests'}:/src/tests:ro"], "user": "10001:10001", "read_only": True,
        "ports": [f"127.0.0.1:{mock_port}:8900"], "profiles": ["mock"]}
    path = workdir / f"{name}.override.yaml"
    path.write_text(yaml.safe_dump(override))
    return Project(engine, name, [DEPLOY / "compose.yaml", path], env, f"http://127.0.0.1:{mock_port}", env_file)


def _doc_compose_args(text: str) -> list[str]:
    """The arguments docs/deploy.md gives after `docker compose -f deploy/compose.yaml`, `--no-build` added
    (the images are built above; 1.29 takes the plugin's arguments unchanged)."""
    words = command_with(text)
    assert words[:4] == ["docker", "compose", "-f", "deploy/compose.yaml"], words
    args = words[4:]
    up = args.index("up")
    return args[:up + 1] + ["--no-build"] + args[up + 1:]


MOCK_ENV = {"SUBRELAY_CODEX_BASE_URL": "http://mock:8900/backend-api/codex", "SUBRELAY_AUTH_BASE_URL": "http://mock:8900"}


def test_compose_default_profile_serves_with_no_env_file_and_writes_the_refreshed_login_back(
        engine: Engine, standins: None, tmp_path):
    for name in ("subrelay.env", "redis.env", "replicas.env", ".env"):
        assert not (DEPLOY / name).exists() or not os.environ.get("CI"), name
    login = tmp_path / "codex-home"
    login.mkdir()
    uid = 12345  # the owner of the login directory on the host: not the image's 10001
    os.chown(login, uid, uid)
    port = free_port()
    env = {"SUBRELAY_API_KEYS": KEY, "SUBRELAY_PUBLISH": f"127.0.0.1:{port}", "CODEX_HOME": str(login),
           "SUBRELAY_UID": str(uid), "SUBRELAY_GID": str(uid), **MOCK_ENV}
    project = _project(engine, tmp_path, "cidefault", env, {})
    started = time.monotonic()
    try:
        project.compose("--profile", "mock", "up", "-d", "--no-build", "mock")
        auth = wait_for(lambda: httpx.post(project.mock_url + "/_mock/auth-file", json={"expires_in": -600},
                                           timeout=5).json(), "the mock")
        write_auth_file(str(login / "auth.json"), auth)  # expired ten minutes ago: the first request refreshes
        os.chown(login / "auth.json", uid, uid)
        project.compose(*_doc_compose_args("up -d subrelay"))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, "compose's subrelay", 60)
        TIMINGS["compose default up"] = time.monotonic() - started
        answer = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, timeout=30,
                            json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text + project.logs()
        written = json.loads((login / "auth.json").read_text())
        assert written["tokens"]["refresh_token"] != auth["tokens"]["refresh_token"]  # refreshed and written back
        stat = (login / "auth.json").stat()
        assert (stat.st_uid, stat.st_mode & 0o777) == (uid, 0o600)
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
    finally:
        project.compose("--profile", "mock", "down", "-v", "--remove-orphans", check=False)
        TIMINGS["compose default (all)"] = time.monotonic() - started


def _haproxy_with_replica_header(workdir: Path) -> Path:
    """The shipped haproxy.cfg plus one line naming the replica that answered (the test's only change)."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    marker = "backend replicas\n"
    assert marker in text
    path = workdir / "haproxy.cfg"
    path.write_text(text.replace(marker, marker + "    http-response set-header x-subrelay-replica %s\n"))
    path.chmod(0o644)
    return path


def test_compose_replicas_profile_team_user_conversation_replica_killed_and_redis_restarted(
        engine: Engine, standins: None, tmp_path):
    port, admin = free_port(), "ci-admin-key-" + "a" * 24
    # deploy/env.example filled in as a user would (its CHANGE-MEs set, two lines uncommented), given with
    # --env-file as deploy/.env would be read: the settings come from the file, only the mock's from the shell.
    filled = {"SUBRELAY_API_KEYS": KEY, "REDIS_PASSWORD": "ci-redis-" + "p" * 24, "SUBRELAY_SECRET_KEY": new_secret(),
              "SUBRELAY_ADMIN_KEY": admin, "SUBRELAY_REPLICAS_PUBLISH": f"127.0.0.1:{port}"}
    lines = []
    for line in (DEPLOY / "env.example").read_text().splitlines():
        name = line.lstrip("# ").split("=", 1)[0]
        lines.append(f"{name}={filled[name]}" if "=" in line and name in filled else line)
    env_file = tmp_path / "env"
    env_file.write_text("\n".join(lines) + "\n")
    assert sum(f"{name}={value}" in env_file.read_text().splitlines() for name, value in filled.items()) == 5
    env = dict(MOCK_ENV)
    replica = {"environment": {"SUBRELAY_CODEX_BASE_URL": "${SUBRELAY_CODEX_BASE_URL}"}}
    override = {"services": {
        "redis": {"healthcheck": {"interval": "1s"}},  # the shipped 10 s makes the replicas wait 10 s to start
        "haproxy": {"volumes": [f"{_haproxy_with_replica_header(tmp_path)}:/usr/local/etc/haproxy/haproxy.cfg:ro"]},
        **{f"subrelay-{n}": replica for n in (1, 2, 3)}}}
    project = _project(engine, tmp_path, "cireplicas", env, override, env_file=env_file)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        project.compose("--profile", "mock", "up", "-d", "--no-build", "mock")
        project.compose(*_doc_compose_args("--profile replicas up"))
        served = set()

        def three_up() -> bool:
            response = httpx.get(url + "/readyz", timeout=3)
            if response.status_code == 200:
                served.add(response.headers.get("x-subrelay-replica"))
            return len(served) == 3
        wait_for(three_up, "HAProxy with three ready replicas", 120, every=0.3)
        TIMINGS["compose replicas up"] = time.monotonic() - started
        with httpx.Client(base_url=url, timeout=30) as http:
            created = http.post("/api/admin/users", headers={"x-admin-key": admin}, json={"name": "alice", "rpm": 100})
            assert created.status_code == 201, created.text + project.logs()
            alice = {"authorization": f"Bearer {created.json()['key']}"}
            no_login = http.post("/v1/chat/completions", headers=alice,
                                 json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
            assert no_login.status_code == 401  # no login yet: never someone else's
            _device_login(http, alice, project.mock_url)
            _drive_a_conversation_across_replicas(http, alice, project.mock_url)

            engine.run("kill", project.container("subrelay-2"))
            after_kill = [http.post("/v1/chat/completions", headers=alice, json={
                "model": "gpt-5.5", "messages": [{"role": "user", "content": f"after kill {n}"}]}) for n in range(6)]
            assert [r.status_code for r in after_kill] == [200] * 6, [r.text for r in after_kill]
            assert {r.headers["x-subrelay-replica"] for r in after_kill} <= {"subrelay-1", "subrelay-3"}

            restarted = time.monotonic()
            engine.run("restart", project.container("redis"), timeout=120)
            wait_for(lambda: http.get("/readyz").status_code == 200, "readiness after Redis restarted", 60)
            back = wait_for(lambda: http.post("/v1/chat/completions", headers=alice, json={
                "model": "gpt-5.5", "messages": [{"role": "user", "content": "after redis"}]}).status_code == 200,
                "alice served after Redis restarted", 60)
            assert back
            print(f"\nRedis restarted: serving again after {time.monotonic() - restarted:.1f} s; alice's key and "
                  "login came back from the AOF")
            users = http.get("/api/admin/users", headers={"x-admin-key": admin}).json()
            assert "alice" in json.dumps(users)
    except AssertionError:
        print(project.logs())
        raise
    finally:
        project.compose("--profile", "replicas", "--profile", "mock", "down", "-v", "--remove-orphans", check=False)
        TIMINGS["compose replicas (all)"] = time.monotonic() - started


def _device_login(http: httpx.Client, key: dict[str, str], mock_url: str) -> None:
    """Alice signs in with ChatGPT herself, through HAProxy, as the account page does it."""
    prefix = "/api/llm/subscription/openai"
    start = http.post(f"{prefix}/device/start", headers=key, json={})
    assert start.status_code == 200, start.text
    decided = httpx.post(mock_url + "/codex/device/decision", timeout=10,
                         data={"user_code": start.json()["user_code"], "decision": "approve"})
    assert decided.status_code < 400, decided.text

    def connected():
        poll = http.post(f"{prefix}/device/poll", headers=key, json={"device_code": start.json()["device_code"]})
        assert poll.status_code == 200, poll.text
        return poll.json().get("connected")
    wait_for(connected, "alice's device login", 30, every=0.5)


def _drive_a_conversation_across_replicas(http: httpx.Client, key: dict[str, str], mock_url: str) -> None:
    first = http.post("/v1/responses", headers=key, json={"model": "gpt-5.5", "input": "My name is Ada. Remember it."})
    assert first.status_code == 200, first.text
    previous, served = first.json()["id"], {first.headers["x-subrelay-replica"]}
    for turn in range(4):
        answer = http.post("/v1/responses", headers=key, json={"model": "gpt-5.5", "previous_response_id": previous,
                                                               "input": f"Turn {turn}: what is my name?"})
        assert answer.status_code == 200, answer.text
        previous = answer.json()["id"]
        served.add(answer.headers["x-subrelay-replica"])
        sent = httpx.get(mock_url + "/_mock/requests", timeout=10).json()[-1]
        assert "My name is Ada" in json.dumps(sent["body"]["input"])  # the whole history reached the upstream
    assert served == {"subrelay-1", "subrelay-2", "subrelay-3"}
