"""Writing a client's configuration file so that ``--undo`` can put back exactly what was there.

The first ``setup`` that changes a file keeps its original bytes (and mode) beside it as
``<name>.subrelay-backup``, or, when there was no file, an empty ``<name>.subrelay-created`` marker
so ``--undo`` removes the file again. Later runs never replace that backup: it is always the state
before subrelay first touched the file. A run whose result is byte-identical writes nothing.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError

BACKUP_SUFFIX = ".subrelay-backup"
CREATED_SUFFIX = ".subrelay-created"


@dataclass(frozen=True)
class FileChange:
    """The whole new content of one file; ``secret`` when it holds a key (then written 0600)."""

    path: Path
    content: bytes
    secret: bool = False


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_text(path: Path) -> str:
    """The file's text ('' when there is none); a file that is not UTF-8 is refused, not guessed at."""
    current = read_or_none(path)
    try:
        return (current or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; set it up by hand") from None


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def created_marker(path: Path) -> Path:
    return path.with_name(path.name + CREATED_SUFFIX)


def real_path(path: Path) -> Path:
    """A symlinked config (dotfiles kept in a repository) is changed where it lives; the link stays."""
    return path.resolve() if path.is_symlink() else path


def apply(change: FileChange) -> bool:
    """Write the change (after keeping the original once); False when the file already had it."""
    change = FileChange(real_path(change.path), change.content, change.secret)
    current = read_or_none(change.path)
    if current == change.content:
        return False
    change.path.parent.mkdir(parents=True, exist_ok=True)
    if not backup_of(change.path).exists() and not created_marker(change.path).exists():
        if current is None:
            created_marker(change.path).touch(mode=0o600)
        else:
            _atomic_write(backup_of(change.path), current, stat.S_IMODE(change.path.stat().st_mode))
    mode = stat.S_IMODE(change.path.stat().st_mode) if current is not None else 0o644
    _atomic_write(change.path, change.content, mode & 0o700 if change.secret else mode)
    return True


def undo(path: Path) -> str:
    """Put back what was there before the first setup; says what it did."""
    path = real_path(path)
    backup, marker = backup_of(path), created_marker(path)
    if backup.exists():
        original = backup.read_bytes()
        _atomic_write(path, original, stat.S_IMODE(backup.stat().st_mode))
        backup.unlink()
        marker.unlink(missing_ok=True)
        return f"restored {path}"
    if marker.exists():
        path.unlink(missing_ok=True)
        marker.unlink()
        return f"removed {path} (there was none before)"
    return f"{path}: nothing to undo (no backup from subrelay setup)"


def _atomic_write(path: Path, content: bytes, mode: int) -> None:
    """Write beside the file and rename over it, so a crash never leaves half a config."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_json_object(path: Path, nested: str, empty: dict[str, Any]) -> dict[str, Any]:
    """A client's JSON settings file as a dict whose ``nested`` entry is a dict (``empty`` if no file)."""
    current = read_or_none(path)
    data: Any = dict(empty)
    if current is not None and current.strip():
        try:
            data = json.loads(current)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); fix or move it, then run setup again") from None
    if not isinstance(data, dict) or not isinstance(data.get(nested, {}), dict):
        raise ConfigError(f"{path} must be a JSON object whose `{nested}` is an object")
    data.setdefault(nested, {})
    return data


def json_change(path: Path, data: dict[str, Any], *, secret: bool) -> FileChange:
    """The change that writes ``data`` the way every run writes it (so a second run is byte-identical)."""
    return FileChange(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), secret=secret)
