"""Sealing logins at rest: AES-256-GCM (``cryptography``), versioned ciphertext naming its key.

``v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``: the key id (8 hex digits of the key's SHA-256)
lets ``subrelay rotate-secret`` re-seal everything under a new key while the old one still opens what
it sealed. The key is ``SUBRELAY_SECRET_KEY`` (32 random bytes, URL-safe base64: ``subrelay secret``
prints one) — every replica needs the same — or, on one host, a generated 0600 key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_FILE = "secret.key"


class SecretKeyError(Exception):
    """The secret key is missing, malformed, or not the one that sealed a value."""


def login_context(name: str) -> str:
    """What a user's sealed login is bound to (the secret box's associated data): their name."""
    return name


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def parse_secret(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError("SUBRELAY_SECRET_KEY must be 32 random bytes in URL-safe base64 "
                             "(`subrelay secret` prints a new one).")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class SecretBox:
    """Seals with the first key; opens with whichever key sealed."""

    def __init__(self, keys: list[bytes], key_file: str | None = None) -> None:
        if not keys:
            raise SecretKeyError("No secret key to seal logins with.")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.current = key_id(keys[0])
        # Key file mode: `subrelay rotate-secret` rewrites the file under a running server. The box follows
        # it (seals with the file's first key as soon as it changes, opens with any key it ever knew), so
        # a live rotation neither makes logins unreadable until a restart nor loses one saved meanwhile.
        self._key_file = key_file
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._key_file is None:
            return None
        try:
            info = os.stat(self._key_file)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def follow_key_file(self) -> bool:
        """Take up a rewritten key file (new keys added, the first one current; known keys kept)."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            with open(self._key_file, "r", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
                keys = [parse_secret(line) for line in handle.read().split() if line]
        except (OSError, SecretKeyError):
            return False
        if not keys:
            return False
        for key in keys:
            self._keys.setdefault(key_id(key), AESGCM(key))
        self.current, self._stamp = key_id(keys[0]), stamp
        return True

    def seal(self, plaintext: bytes, *, context: str) -> str:
        self.follow_key_file()  # a stat per seal: seals are rare (a login, a refresh)
        nonce = os.urandom(12)
        sealed = self._keys[self.current].encrypt(nonce, plaintext, context.encode())
        return f"{VERSION}.{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str, *, context: str) -> bytes:
        """The plaintext; ``context`` (the user's name) must match, so a sealed login cannot be moved."""
        version, _, rest = value.partition(".")
        kid, _, body = rest.partition(".")
        if version == VERSION and kid not in self._keys:
            self.follow_key_file()  # sealed by a rotation this box has not seen yet
        if version != VERSION or kid not in self._keys:
            raise SecretKeyError("A stored login was sealed with another secret key (SUBRELAY_SECRET_KEY changed?).")
        try:
            raw = base64.urlsafe_b64decode(body)
            return self._keys[kid].decrypt(raw[:12], raw[12:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError("A stored login could not be opened (damaged, or sealed for someone else).") from None

    def sealed_with_current(self, value: str) -> bool:
        return value.split(".", 2)[1:2] == [self.current]


def load_keys(env: dict[str, str] | object, state_dir: str) -> list[bytes]:
    """The secret keys, current first: ``SUBRELAY_SECRET_KEY`` (and ``SUBRELAY_SECRET_KEY_PREVIOUS``
    while rotating), else the key file in the state directory, created 0600 on first use."""
    get = env.get  # type: ignore[attr-defined]
    if get("SUBRELAY_SECRET_KEY"):
        keys = [parse_secret(get("SUBRELAY_SECRET_KEY"))]
        if get("SUBRELAY_SECRET_KEY_PREVIOUS"):
            keys.append(parse_secret(get("SUBRELAY_SECRET_KEY_PREVIOUS")))
        return keys
    path = os.path.join(state_dir, KEY_FILE)
    try:
        with open(path, "r", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
            return [parse_secret(line) for line in handle.read().split() if line]
    except FileNotFoundError:
        pass
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    key = new_secret()
    write_key_file(path, [key])
    return [parse_secret(key)]


def write_key_file(path: str, keys: list[str]) -> None:
    """Atomically (write, fsync, rename) and privately (0600): losing this file loses every login."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
