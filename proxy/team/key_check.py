"""Whether this server's secret key opens what the shared store holds.

A replica started with another ``SUBRELAY_SECRET_KEY`` would report ready and then fail every member's
login (and seal new ones nobody else can open). A small sealed value, the key check, is kept in the
store beside the plan windows: the first server seals it, every other one must be able to open it, and
``/readyz`` fails (503 ``secret_key_mismatch``, said in the log) while it cannot. ``rotate-secret``
re-seals it with the logins.
"""

from __future__ import annotations

from proxy.state.team import TeamStore
from proxy.team.secretbox import SecretBox, SecretKeyError, login_context

KEY_CHECK = "subrelay:secret-key-check"  # a plan-windows slot no login can have (logins are "account:…")
_PLAIN = b"subrelay secret key check"


async def check_secret_key(store: TeamStore, box: SecretBox) -> str | None:
    """None when ``box`` opens the store's key check (sealing one if there is none yet), else why not."""
    stored = await store.get_plan_windows(KEY_CHECK)
    if not stored or not isinstance(stored.get("sealed"), str):
        sealed_with = await _first_login_key(store, box)
        if sealed_with is not None:  # a store from before the key check: its logins are the check
            return (f"this server's secret key ({box.current}) does not open the logins in the store (sealed with "
                    f"{sealed_with}): give every replica the SUBRELAY_SECRET_KEY that sealed them")
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


_PROBED_USERS = 20  # a store without a key check: this many users' logins are tried (one is enough)


async def _first_login_key(store: TeamStore, box: SecretBox) -> str | None:
    """The key id of the first stored login ``box`` cannot open (None: every one tried opens, or none)."""
    for user in (await store.list_users())[:_PROBED_USERS]:
        login = await store.get_login(user.name)
        if login is None:
            continue
        try:
            box.open(login.sealed, context=login_context(user.name))
        except SecretKeyError:
            return login.sealed.split(".", 2)[1] if login.sealed.count(".") >= 2 else "another key"
        return None
    return None
