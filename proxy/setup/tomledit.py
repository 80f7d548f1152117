"""Setting a few keys in a TOML file by editing its lines, so the user's comments and layout stay.

Python reads TOML but has no writer that keeps comments, and a config file is the user's: only the
lines of the keys we own change, everything else keeps its bytes. Editing the result again with the
same values gives the same bytes (so ``setup`` twice changes nothing). The result is parsed back and
compared with what was meant; anything this editor cannot do safely is refused with the reason.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from proxy.errors import ConfigError

_HEADER = re.compile(r"^\s*\[")


def toml_value(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")


def _table_header(dotted: str) -> re.Pattern[str]:
    parts = [rf"(?:{re.escape(p)}|\"{re.escape(p)}\")" for p in dotted.split(".")]
    return re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(parts) + r"\s*\]\s*(?:#.*)?$")


def _set_in_region(lines: list[str], start: int, end: int, values: dict[str, Any], remove: tuple[str, ...]) -> list[str]:
    """Set ``values`` (and drop ``remove``) among lines[start:end]; new keys go after the last key line."""
    region = lines[start:end]
    for key in remove:
        region = [line for line in region if not _key_line(key).match(line)]
    last_key = -1
    for index, line in enumerate(region):
        if re.match(r"^\s*[A-Za-z0-9_\"-]+\s*=", line):
            last_key = index
    for key, value in values.items():
        text = f"{key} = {toml_value(value)}\n"
        found = [i for i, line in enumerate(region) if _key_line(key).match(line)]
        if found:
            region[found[0]] = text
        else:
            last_key += 1
            region.insert(last_key, text)
    return lines[:start] + region + lines[end:]


def set_keys(text: str, top: dict[str, Any], table: str, table_values: dict[str, Any],
             remove_from_table: tuple[str, ...] = ()) -> str:
    """``text`` with ``top`` set before the first table and ``table_values`` set in ``[table]``."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"it is not valid TOML ({exc}); fix or move it, then run setup again") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, value in top.items():
        if _multiline(before.get(key)):
            raise ConfigError(f"its top-level `{key}` is not a single line; set it by hand")
    first_table = next((i for i, line in enumerate(lines) if _HEADER.match(line)), len(lines))
    lines = _set_in_region(lines, 0, first_table, top, ())
    header = _table_header(table)
    at = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if at is None:
        if _dig(before, table) is not None:
            raise ConfigError(f"it defines `{table}` in a form other than a `[{table}]` table; "
                              "remove that definition and run setup again")
        if lines and lines[-1].strip():
            lines.append("\n")
        lines.append(f"[{table}]\n")
        at = len(lines) - 1
    end = next((i for i in range(at + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    # keep the blank lines that separate it from the next table outside the keys
    while end > at + 1 and not lines[end - 1].strip():
        end -= 1
    lines = _set_in_region(lines, at + 1, end, table_values, remove_from_table)
    result = "".join(lines)
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError as exc:  # e.g. a multi-line value of ours was split
        raise ConfigError(f"editing it would break it ({exc}); set it up by hand") from None
    got = _dig(after, table) or {}
    if any(after.get(k) != v for k, v in top.items()) or any(got.get(k) != v for k, v in table_values.items()) \
            or any(k in got for k in remove_from_table):
        raise ConfigError("it is laid out in a way this editor cannot change safely; set it up by hand")
    return result


def _multiline(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
