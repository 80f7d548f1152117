"""A minimal HTTP/1.1 client on one raw socket, for tests that must know the connection survived.

HTTP libraries reconnect silently when a server drops a keep-alive connection; this client does not:
if the server closed the socket, the next request fails with :class:`ConnectionClosed`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


class ConnectionClosed(Exception):
    pass


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class KeepAliveClient:
    def __init__(self, host: str, port: int, timeout: float = 20.0) -> None:
        assert host in ("127.0.0.1", "localhost", "::1"), "tests talk to loopback only"
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> RawResponse:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        return self._read_response()

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self._buffer += chunk

    def _read_response(self) -> RawResponse:
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            body = b"".join(parts)
        else:
            body = self._read_exactly(int(headers.get("content-length", "0")))
        return RawResponse(status, headers, body)
