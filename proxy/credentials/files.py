"""Credential files on disk: change detection by (mtime, size, inode), and atomic private writes."""

from __future__ import annotations

import os
import secrets as _random
from dataclasses import dataclass
from typing import Any

import orjson


class CredentialFileError(Exception):
    """A credential file is missing, unreadable or not what we expect; ``reason`` says which."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{path}: {reason}{': ' + detail if detail else ''}")
        self.path = path
        self.reason = reason  # "missing" | "unreadable" | "corrupt"
        self.detail = detail


@dataclass(slots=True, frozen=True)
class FileStamp:
    mtime_ns: int
    size: int
    inode: int


class CachedJsonFile:
    """A JSON file read again only when its stamp changes, so another program's rotation is seen
    on the next request without re-parsing the file on every request."""

    __slots__ = ("path", "_stamp", "_data", "_held")

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: FileStamp | None = None
        self._data: dict[str, Any] | None = None
        self._held: tuple[FileStamp, dict[str, Any]] | None = None

    def load(self) -> dict[str, Any]:
        """The file's current JSON object; raises :class:`CredentialFileError`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp = self._data = None
            raise CredentialFileError(self.path, "missing") from None
        except OSError as exc:
            raise CredentialFileError(self.path, "unreadable", exc.strerror or "") from None
        stamp = FileStamp(st.st_mtime_ns, st.st_size, st.st_ino)
        if self._held is not None:
            if self._held[0] == stamp:
                return self._held[1]
            self._held = None  # the file changed since: it wins
        if stamp == self._stamp and self._data is not None:
            return self._data
        data = read_json_object(self.path)
        self._stamp, self._data = stamp, data
        return data

    def invalidate(self) -> None:
        """Forget the parsed copy (the next load re-reads even if the stamp looks unchanged)."""
        self._stamp = self._data = None

    def hold(self, data: dict[str, Any]) -> None:
        """Serve ``data`` instead of the file until the file changes (used when a write failed, so
        newer tokens than the file's are not lost)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return
        self._held = (FileStamp(st.st_mtime_ns, st.st_size, st.st_ino), data)


def read_json_object(path: str) -> dict[str, Any]:
    """Read ``path`` as a JSON object, classifying every failure as missing/unreadable/corrupt."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise CredentialFileError(path, "missing") from None
    except OSError as exc:
        raise CredentialFileError(path, "unreadable", exc.strerror or "") from None
    if not raw.strip():
        raise CredentialFileError(path, "corrupt", "the file is empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CredentialFileError(path, "corrupt", "the file is not valid JSON") from None
    if not isinstance(data, dict):
        raise CredentialFileError(path, "corrupt", "the file does not hold a JSON object")
    return data


def atomic_write_json(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never half.

    The temp file is created beside the real file (same filesystem, so the rename is atomic) with
    ``O_EXCL | O_NOFOLLOW`` and mode 0600, fsynced before the rename, and the directory fsynced after.
    A symlinked credential file is written through to its target, keeping the link.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    temp = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.{_random.token_hex(4)}.tmp")
    payload = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have narrowed it; never let it be wider
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
