"""Small files the workers of one host share (cooldowns, the model catalogue): noticing that another
worker changed one, and taking its lock, without following links an attacker could plant."""

from __future__ import annotations

import fcntl
import os

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced or rewritten (None if it is missing): one stat,
    so a worker re-reads the file only after another worker wrote it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def lock(path: str, *, wait: bool) -> int | None:
    """An exclusive ``flock`` on ``path`` (created 0600): the descriptor to close to release it, or
    None when the file cannot be opened or, with ``wait=False``, another process holds it."""
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
