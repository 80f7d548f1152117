"""Writing a client's configuration file so that ``--undo`` can put back exactly what was there.

The first ``setup`` that changes a file keeps its original bytes (and mode) beside it as
``<name>.subrelay-backup``; ``<name>.subrelay-setup`` records whether there was a file at all (so
``--undo`` removes one setup created) and the hash of what setup last wrote, so ``--undo`` refuses
to throw away edits made after setup unless forced. Later runs never replace the backup: it is
always the state before subrelay first touched the file. A byte-identical result writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError

BACKUP_SUFFIX = ".subrelay-backup"
RECORD_SUFFIX = ".subrelay-setup"


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


def record_of(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def real_path(path: Path) -> Path:
    """A symlinked config (dotfiles kept in a repository) is changed where it lives; the link stays."""
    return path.resolve() if path.is_symlink() else path


def _digest(content: bytes | None) -> str | None:
    return None if content is None else hashlib.sha256(content).hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    raw = read_or_none(record_of(path))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("created"), bool):
        raise ConfigError(f"{record_of(path)} is not what subrelay setup wrote; remove it or restore by hand")
    return record


def apply(change: FileChange) -> bool:
    """Write the change (after keeping the original once); False when the file already had it."""
    path = real_path(change.path)
    current = read_or_none(path)
    if current == change.content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    record = _read_record(path)
    if record is None:
        record = {"created": current is None}
        if current is not None:
            _atomic_write(backup_of(path), current, stat.S_IMODE(path.stat().st_mode))
    mode = stat.S_IMODE(path.stat().st_mode) if current is not None else 0o644
    _atomic_write(path, change.content, mode & 0o700 if change.secret else mode)
    record["written_sha256"] = _digest(change.content)
    _atomic_write(record_of(path), (json.dumps(record) + "\n").encode(), 0o600)
    return True


def undo(path: Path, *, force: bool = False) -> str:
    """Put back what was there before the first setup; says what it did. Edits made since setup
    are not thrown away silently: without ``force`` that is refused, with the reason."""
    path = real_path(path)
    record = _read_record(path)
    if record is None:
        return f"{path}: nothing to undo (no record of subrelay setup beside it)"
    current = read_or_none(path)
    if not force and current is not None and _digest(current) != record.get("written_sha256"):
        raise ConfigError(f"{path} was changed after subrelay setup wrote it, and --undo would lose those "
                          f"changes; compare it with {backup_of(path).name if not record['created'] else 'nothing (setup created it)'}, "
                          "or run `--undo --force` to put the original back anyway")
    if record["created"]:
        path.unlink(missing_ok=True)
        message = f"removed {path} (there was none before)"
    else:
        backup = backup_of(path)
        original = read_or_none(backup)
        if original is None:
            raise ConfigError(f"{backup} is missing, so the original of {path} cannot be restored")
        _atomic_write(path, original, stat.S_IMODE(backup.stat().st_mode))
        backup.unlink()
        message = f"restored {path}"
    record_of(path).unlink()
    return message


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
