"""Small files the workers of one host share (cooldowns, the model catalogue, the response record):
noticing that another worker changed one, taking its lock, reading and replacing it — never through a
link an attacker planted, never from a file another user owns or could have written.

The directory itself must be ours and closed to others (:func:`check_state_dir`, at start-up); a file
in it that fails the checks is not used, and the warning says that sharing is off for it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import stat
from typing import Any

import orjson

from proxy.errors import ConfigError
from proxy.observe.redact import get_logger

log = get_logger("subrelay.state")

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC
_warned: set[str] = set()


class UnsafeStateFile(OSError):
    """A shared-state file that is not a regular file or not ours."""


def check_state_dir(path: str) -> None:
    """A clear start-up error unless ``path`` is a real directory owned by this user that nobody
    else can write (a link, another owner or a group/world-writable mode would let another local
    user plant the files every worker trusts)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"SUBRELAY_STATE_DIR {path!r} does not exist (create it: mkdir -m 700 {path}).") from None
    fix = "use a private directory: mkdir -m 700 <dir> and point SUBRELAY_STATE_DIR at it"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"SUBRELAY_STATE_DIR {path!r} is a link or not a directory; {fix}.")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"SUBRELAY_STATE_DIR {path!r} belongs to uid {st.st_uid}, not to this server's user "
                          f"(uid {os.geteuid()}); {fix} (or chown it).")
    if st.st_mode & 0o022:
        raise ConfigError(f"SUBRELAY_STATE_DIR {path!r} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                          f"chmod 700 {path}, or {fix}.")


def open_state_file(path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor for ``path``, which must be a regular file of ours (links are not followed;
    a mode open to others is narrowed to 0600); :class:`UnsafeStateFile` otherwise."""
    fd = os.open(path, flags | os.O_NOFOLLOW | _CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeStateFile(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UnsafeStateFile(f"{path} belongs to uid {st.st_uid}, not to this server's user")
        if st.st_mode & 0o077:  # ours, so ours to close: nobody else reads conversations or plants entries
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def refused(path: str, error: OSError) -> None:
    """Say loudly (once per file) that a shared file is not used, so sharing is off for it."""
    if path in _warned:
        return
    _warned.add(path)
    reason = "it is a symbolic link" if getattr(error, "errno", None) == 40 else str(error)
    log.warning("NOT sharing %s between workers: %s. Each worker keeps its own copy until it is removed "
                "or fixed (a regular file of this user, mode 600).", path, reason)


def read_state_file(path: str) -> bytes | None:
    """The file's bytes, or None when it is missing or refused (then with a warning)."""
    try:
        fd = open_state_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        refused(path, exc)
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def write_state_json(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``data``: a fresh 0600 file beside it (``O_EXCL|O_NOFOLLOW``)
    renamed over it, so a link planted at ``path`` is replaced, never written through. No fsync:
    these files are caches."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(orjson.dumps(data))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced or rewritten (None if it is missing): one lstat,
    so a worker re-reads the file only after another worker wrote it."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def lock(path: str, *, wait: bool) -> int | None:
    """An exclusive ``flock`` on ``path`` (created 0600): the descriptor to close to release it, or
    None when the file is refused (a warning says sharing is off) or, with ``wait=False``, another
    process holds it."""
    try:
        fd = open_state_file(path, _LOCK_FLAGS)
    except OSError as exc:
        refused(path, exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class FileSlot:
    """A :class:`proxy.state.slots.SharedSlot` in the state directory: an atomically replaced file, its
    change stamp, and a non-blocking ``flock`` beside it to elect the refresher."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def stamp(self):
        return file_stamp(self.path)

    async def read(self) -> bytes | None:
        return read_state_file(self.path)  # a link, or a file another user owns or could write, is refused

    async def write(self, record: dict[str, Any]):
        write_state_json(self.path, record)  # replaces a planted link, never writes through
        return file_stamp(self.path)

    async def try_lock(self):
        return lock(self.path + ".lock", wait=False)

    async def unlock(self, handle) -> None:
        os.close(handle)
