"""Loopback mock upstreams for end-to-end tests and benchmarks (never a real vendor)."""

from .server import MockCodexServer, MockState
from .serving import ServerThread

__all__ = ["MockCodexServer", "MockState", "ServerThread"]
