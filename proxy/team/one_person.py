"""One ChatGPT account, one person: a member may not link a ChatGPT account that another member or the
owner already linked here. OpenAI's Terms of Use: "You may not share your account credentials or make
your account available to anyone else" (research/team-mode.md §3), and subrelay never lets one
person's plan serve another.

``[identity] shared_account = "warn"`` relaxes this for one case only: the same *person* (linked to both
users through the same sign-in subject or email) linking their account to a second user of theirs is
allowed, with a warning; two different people are refused whatever the setting.
Checked when a login is linked (a few reads per user, never on the request path).
"""

from __future__ import annotations

from proxy.errors import ProxyError
from proxy.login.store import current_account
from proxy.observe.redact import get_logger
from proxy.state.team import OWNER_LOGIN, TeamStore

log = get_logger("subrelay.team")
RULE = ("OpenAI's Terms of Use say \"You may not share your account credentials or make your account available "
        "to anyone else\": each person links their own ChatGPT account.")


class AccountInUse(ProxyError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="chatgpt_account_in_use", status_code=409)


async def holders(store: TeamStore, account_id: str, *, except_user: str,
                  owner_auth_path: str | None = None) -> list[str]:
    """Who else has ``account_id`` linked: user names, and ``OWNER_LOGIN`` for the owner."""
    found = []
    for user in await store.list_users():
        if user.name != except_user:
            login = await store.get_login(user.name)
            if login is not None and login.account_id == account_id:
                found.append(user.name)
    if except_user == OWNER_LOGIN:
        return found
    owner = await store.get_login(OWNER_LOGIN) if store.remote else None
    owner_account = owner.account_id if owner is not None else None
    if owner_account is None and owner_auth_path:
        described = current_account(owner_auth_path)
        owner_account = described.account_id if described is not None else None
    if owner_account == account_id:
        found.append(OWNER_LOGIN)
    return found


async def _person(store: TeamStore, user: str) -> str | None:
    from proxy.identity.people import person_of  # the links sign-in keeps (only the warn mode reads them)

    return await person_of(store, user)


async def check_account_free(store: TeamStore, user: str, account_id: str | None, *, mode: str = "refuse",
                             owner_auth_path: str | None = None) -> str | None:
    """Raise :class:`AccountInUse` when another person holds ``account_id``; a warning (or None) otherwise."""
    if not account_id:
        return None
    others = await holders(store, account_id, except_user=user, owner_auth_path=owner_auth_path)
    if not others:
        return None
    if OWNER_LOGIN in others:
        raise AccountInUse(f"This ChatGPT account ({account_id}) is already this subrelay owner's login, so it "
                           f"cannot be linked to user {user!r} as well. {RULE}")
    mine = await _person(store, user) if mode == "warn" else None
    for other in others:
        if mine is None or mine != await _person(store, other):
            raise AccountInUse(f"This ChatGPT account ({account_id}) is already linked to another member here, so "
                               f"it cannot be linked to user {user!r} too. {RULE}")
    warning = (f"user {user!r} links the ChatGPT account {account_id} that the same person's user(s) "
               f"{', '.join(others)} already use (allowed by shared_account = \"warn\")")
    log.warning("%s", warning)
    return warning
