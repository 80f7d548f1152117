"""Giving memory back after a burst: once the last of many open streams has closed, the C allocator is
asked to return its free pages (glibc's ``malloc_trim``), so a spike of held streams does not leave the
process at its peak size for good. At most once per :data:`TRIM_EVERY` seconds; a no-op elsewhere."""

from __future__ import annotations

import ctypes
import ctypes.util
import time

TRIM_EVERY = 10.0
BURST = 32  # streams open at once before a trim is worth asking for

_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _trim = None


class StreamCount:
    """Open streams, and the most seen since the last trim."""

    __slots__ = ("open", "peak", "last_trim")

    def __init__(self) -> None:
        self.open = self.peak = 0
        self.last_trim = 0.0

    def opened(self) -> None:
        self.open += 1
        if self.open > self.peak:
            self.peak = self.open

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self.peak >= BURST and _trim is not None:
            now = time.monotonic()
            if now - self.last_trim >= TRIM_EVERY:
                self.last_trim, self.peak = now, 0
                _trim(0)


STREAMS = StreamCount()
