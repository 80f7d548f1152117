"""Client keys for team members: 256 random bits with a recognisable prefix, shown once, stored only
as a SHA-256 hash (adequate for keys this random; nothing to brute-force), looked up by that hash."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "srk_"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: bytes | str) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def looks_like_user_key(key: bytes) -> bool:
    return key.startswith(_PREFIX)


_PREFIX = KEY_PREFIX.encode()


def valid_name(name: object) -> bool:
    """User names: lowercase letters, digits, ``.``, ``_``, ``-``; up to 63; safe in URLs, logs and labels."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None
