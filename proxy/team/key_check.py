"""Whether this server's secret key opens what the shared store holds.

A replica started with another ``SUBRELAY_SECRET_KEY`` would report ready and then fail every member's
login (and seal new ones nobody else can open). A small sealed value, the key check, is kept in the
store beside the plan windows: the first server seals it, every other one must be able to open it, and
``/readyz`` fails (503 ``secret_key_mismatch``, said in the log) while it cannot. ``rotate-secret``
re-seals it with the logins.
"""

from __future__ import annotations

from proxy.state.team import TeamStore
from proxy.team.secretbox import SecretBox, SecretKeyError

KEY_CHECK = "subrelay:secret-key-check"  # a plan-windows slot no login can have (logins are "account:…")
_PLAIN = b"subrelay secret key check"


async def check_secret_key(store: TeamStore, box: SecretBox) -> str | None:
    """None when ``box`` opens the store's key check (sealing one if there is none yet), else why not."""
    stored = await store.get_plan_windows(KEY_CHECK)
    if not stored or not isinstance(stored.get("sealed"), str):
        await store.put_plan_windows(KEY_CHECK, {"sealed": box.seal(_PLAIN, context=KEY_CHECK), "key_id": box.current})
        return None
    try:
        box.open(stored["sealed"], context=KEY_CHECK)
        return None
    except SecretKeyError:
        return (f"this server's secret key ({box.current}) is not the one the shared store's logins are sealed with "
                f"({stored.get('key_id')}): give every replica the same SUBRELAY_SECRET_KEY (`subrelay secret` prints "
                "it where it was made)")


async def reseal_key_check(store: TeamStore, box: SecretBox) -> None:
    """After a rotation: the key check sealed with the current key (if the box can open the old one)."""
    stored = await store.get_plan_windows(KEY_CHECK)
    if stored and isinstance(stored.get("sealed"), str):
        try:
            box.open(stored["sealed"], context=KEY_CHECK)
        except SecretKeyError:
            return
    await store.put_plan_windows(KEY_CHECK, {"sealed": box.seal(_PLAIN, context=KEY_CHECK), "key_id": box.current})
