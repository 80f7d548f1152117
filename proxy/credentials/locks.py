"""Single-flight refresh: one refresh at a time in this process *and* across processes.

Refresh tokens are single-use: if two refreshes race with the same token, the loser's request is
treated as token reuse and the user is logged out. An ``asyncio.Lock`` serialises this process's
tasks; an ``flock`` on a lock file beside the credential file serialises other subrelay processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class LockUnavailable(Exception):
    """The lock file cannot be used (a symlink, a directory, or a directory we may not write)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


class RefreshLock:
    def __init__(self, lock_path: str, *, timeout: float = 60.0, poll_interval: float = 0.05) -> None:
        self.lock_path = lock_path
        self._local = asyncio.Lock()
        self._timeout = timeout
        self._poll_interval = poll_interval

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold both locks; raises ``TimeoutError`` if another process keeps the file lock too long."""
        async with self._local:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(self.lock_path, flags, 0o600)
            except OSError as exc:
                raise LockUnavailable(self.lock_path, _lock_problem(self.lock_path, exc)) from None
            try:
                deadline = time.monotonic() + self._timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"another process holds {self.lock_path}") from None
                        await asyncio.sleep(self._poll_interval)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _lock_problem(path: str, exc: OSError) -> str:
    if os.path.islink(path):
        return "it is a symbolic link (refused, so the lock cannot be redirected); remove it"
    if os.path.isdir(path):
        return "it is a directory; remove it"
    return f"it cannot be created or opened ({exc.strerror}); make its directory writable"
