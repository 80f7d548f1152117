"""Memory per stalled stream: N clients ask for long streamed answers and never read them.

The proxy runs as its own process (``python -m proxy serve``) against the mock Codex backend in another,
so the RSS read from /proc is the proxy's alone. Each client sends one streaming request on a raw
socket with a small receive buffer and reads nothing; the RSS is read before, while they are held, and
after they closed. Usage: ``python benchmarks/probes/stalled_streams.py [N] [deltas] [delta_size]``
(defaults 300 streams of 20,000 deltas of 64 bytes: about 3 MB of answer each). ``STALL_DELAY=1``
makes the upstream slow instead (a delta a second): what a held stream costs with nothing buffered.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    deltas = sys.argv[2] if len(sys.argv) > 2 else "20000"
    size = sys.argv[3] if len(sys.argv) > 3 else "64"
    measure(streams, deltas, size)


def measure(streams: int, deltas: str = "20000", size: str = "64", python: str = sys.executable) -> dict[str, float]:
    """RSS (KiB) of a proxy process before, while ``streams`` stalled clients are held, and after."""
    work = tempfile.mkdtemp(prefix="subrelay-stalled-")
    mock_port, proxy_port = free_port(), free_port()
    auth = os.path.join(work, "auth.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mock = subprocess.Popen([python, "-m", "tests.mock_upstream", "--port", str(mock_port), "--auth-file", auth,
                             "--deltas", deltas, "--delta-size", size, *(["--delay", os.environ["STALL_DELAY"]] if os.environ.get("STALL_DELAY") else [])], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{mock_port}/healthz")
    proxy_env = {**env, "CODEX_AUTH_PATH": auth, "SUBRELAY_CODEX_BASE_URL": f"http://127.0.0.1:{mock_port}/backend-api/codex",
                 "SUBRELAY_STATE_DIR": os.path.join(work, "state"), "SUBRELAY_LOG_LEVEL": "warning",
                 "SUBRELAY_MAX_CLIENT_CONNECTIONS": str(streams + 50)}
    proxy = subprocess.Popen([python, "-m", "proxy", "serve", "--port", str(proxy_port)], cwd=ROOT,
                             env=proxy_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clients: list[socket.socket] = []
    try:
        wait_up(f"http://127.0.0.1:{proxy_port}/healthz")
        body = b'{"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"a long answer"}]}'
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{proxy_port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        for _ in range(0 if os.environ.get("STALL_DELAY") else 20):  # warm: what later answers reuse
            httpx.post(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", content=body, timeout=60,
                       headers={"content-type": "application/json"})
        time.sleep(1.0)
        before = rss_kib(proxy.pid)
        for _ in range(streams):
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", proxy_port))
            client.sendall(request)
            clients.append(client)
        time.sleep(8.0)  # every stream has filled what it can
        held = rss_kib(proxy.pid)
        for client in clients:
            client.close()
        clients.clear()
        time.sleep(5.0)
        after = rss_kib(proxy.pid)
        print(f"streams held: {streams}; proxy RSS before {before / 1024:.1f} MiB, held {held / 1024:.1f} MiB "
              f"(+{(held - before) / streams:.0f} KiB per stalled stream), after close {after / 1024:.1f} MiB")
        return {"before": before, "held": held, "after": after, "per_stream": (held - before) / streams}
    finally:
        for client in clients:
            client.close()
        for process in (proxy, mock):
            process.terminate()
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
