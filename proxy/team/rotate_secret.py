"""``subrelay rotate-secret``: re-seal every stored login under a new secret key.

Each login is opened with whichever known key sealed it and sealed again with the current key, then
saved with a compare-and-set on the version it was read at, so a refresh that lands meanwhile (on a
running server) is never overwritten: that login is read again and re-sealed from its newer value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from proxy.state.team import StoreError, TeamStore
from proxy.team.key_check import reseal_key_check
from proxy.team.secretbox import (
    KEY_FILE,
    SecretBox,
    SecretKeyError,
    load_keys,
    login_context,
    new_secret,
    parse_secret,
    write_key_file,
)

_ATTEMPTS = 5  # reads of one login racing a refresh before giving up (each loss means a newer login landed)
_PASSES = 3  # sweeps over all users: a running server may write a login under the old key during a sweep


@dataclass
class Resealed:
    resealed: int = 0
    current: int = 0  # already sealed with the current key
    unopenable: list[str] = field(default_factory=list)  # sealed with a key nobody has any more


async def reseal_logins(store: TeamStore, box: SecretBox) -> Resealed:
    """Re-seal every login not yet under ``box``'s current key; sweeps again while a sweep changed some."""
    result = Resealed()
    for _ in range(_PASSES):
        sweep = await _sweep(store, box)
        result.resealed += sweep.resealed
        result.current, result.unopenable = sweep.current, sweep.unopenable
        if sweep.resealed == 0:
            return result
    return result


async def _sweep(store: TeamStore, box: SecretBox) -> Resealed:
    result = Resealed()
    for user in await store.list_users():
        for _ in range(_ATTEMPTS):
            login = await store.get_login(user.name)
            if login is None:
                break
            if box.sealed_with_current(login.sealed):
                result.current += 1
                break
            try:
                plaintext = box.open(login.sealed, context=login_context(user.name))
            except SecretKeyError:
                result.unopenable.append(user.name)
                break
            resealed = replace(login, sealed=box.seal(plaintext, context=login_context(user.name)),
                               version=login.version + 1)
            if await store.put_login(user.name, resealed, expected_version=login.version):
                result.resealed += 1
                break
        else:
            raise StoreError(f"the login of {user.name!r} kept changing while it was re-sealed; run rotate-secret again")
    return result


@dataclass
class Rotation:
    result: Resealed
    key_id: str
    mode: str  # "file" or "env"
    key_file: str | None = None


async def rotate_key_file(store: TeamStore, env: Mapping[str, str], directory: str) -> Rotation:
    """Key file mode: a new key first in the file (the old ones still open what they sealed, should this
    stop half-way), every login re-sealed, then the file rewritten with the new key alone."""
    path = os.path.join(directory, KEY_FILE)
    old = load_keys({}, directory)  # creates the file when there is none yet
    fresh = new_secret()
    write_key_file(path, [fresh, *(_text(key) for key in old)])
    box = SecretBox([parse_secret(fresh), *old])
    result = await reseal_logins(store, box)
    write_key_file(path, [fresh])
    # A running server may have sealed a login with the old key just before it took up the new file:
    # one more sweep, while this process still holds the old key, catches it.
    late = await reseal_logins(store, box)
    result.resealed += late.resealed
    result.current, result.unopenable = late.current, late.unopenable
    await reseal_key_check(store, box)
    return Rotation(result, box.current, "file", path)


async def rotate_env_key(store: TeamStore, env: Mapping[str, str], directory: str) -> Rotation:
    """``SUBRELAY_SECRET_KEY`` mode: re-seal under it, opening with ``SUBRELAY_SECRET_KEY_PREVIOUS`` (and
    the key file's keys, if one is left from before the variable was set)."""
    keys = load_keys(env, directory)
    path = os.path.join(directory, KEY_FILE)
    if os.path.exists(path):
        keys += [key for key in load_keys({}, directory) if key not in keys]
    box = SecretBox(keys)
    result = await reseal_logins(store, box)
    await reseal_key_check(store, box)
    return Rotation(result, box.current, "env")


def _text(key: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(key).decode()
