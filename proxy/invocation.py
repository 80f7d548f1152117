"""How this person runs subrelay, so the commands messages suggest work as typed.

A clone installed as the README says leaves the command at ``.venv/bin/subrelay``, not on ``PATH``:
a message saying ``subrelay login`` would fail there. The command is the one this process was
started with (``sys.argv[0]``) when that is subrelay's script, else this environment's script.
Imports nothing of the proxy, so every layer may use it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys


@functools.cache
def program() -> str:
    """``subrelay`` when that name finds this installation on PATH, else the path to its script."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    script = argv0 if os.path.basename(argv0) == "subrelay" else os.path.join(sys.prefix, "bin", "subrelay")
    if not os.path.exists(script):
        return "subrelay"
    on_path = shutil.which("subrelay")
    if on_path and os.path.realpath(on_path) == os.path.realpath(script):
        return "subrelay"
    if script is argv0:
        return argv0  # as the person typed it
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else script


def command(arguments: str) -> str:
    """The full command for ``arguments``, e.g. ``command("login")`` → ``.venv/bin/subrelay login``."""
    return f"{program()} {arguments}"
