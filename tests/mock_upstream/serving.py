"""Running an ASGI app with uvicorn on a free 127.0.0.1 port in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn


class ServerThread:
    """``with ServerThread(app) as server: server.url`` — a real HTTP server, loopback only."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 config: uvicorn.Config | None = None) -> None:
        # Loopback, or the test's own address on the namespace network tests/netns.py makes (no route leaves it).
        if host not in ("127.0.0.1", "localhost", "::1", "10.213.0.1") or (
                config is not None and config.host != "127.0.0.1"):
            raise ValueError("test servers listen on loopback (or tests/netns.py's own address) only")
        self.config = config or uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                                               loop="asyncio", http="httptools", access_log=False)
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
