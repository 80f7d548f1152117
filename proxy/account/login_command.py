"""``subrelay login`` and ``subrelay login --with-access-token``: a flow of :mod:`proxy.login.cli` at the
terminal, then the login saved where it belongs — the owner's login file, or (``--user NAME``, or with
Redis) sealed into the team store. It sits above the team and the account surface it saves through, so
:mod:`proxy.login` never imports them."""

from __future__ import annotations

import asyncio
import sys

import proxy.credentials.access_token as access_token
from proxy.account.team_member import save_user_access_token, save_user_login
from proxy.config.settings import Settings
from proxy.errors import ProxyError
from proxy.login.cli import browser_tokens, device_tokens, who
from proxy.login.store import Account, describe, save_access_token, save_login
from proxy.state.team import OWNER_LOGIN
from proxy.team.context import open_team


def login(settings: Settings, *, device: bool, no_browser: bool, paste: bool, out=sys.stderr,
          user: str | None = None) -> int:
    if user is not None:
        problem = _check_user(settings, user)
        if problem:
            print(f"subrelay: {problem}", file=out)
            return 2
    try:
        tokens = asyncio.run(device_tokens(settings, out) if device else browser_tokens(settings, no_browser, paste, out))
    except ProxyError as exc:
        print(f"subrelay: login failed: {exc.message}", file=out)
        return 1
    except (TimeoutError, KeyboardInterrupt):
        print("subrelay: login abandoned.", file=out)
        return 1
    if user is not None:
        return _save_for_user(settings, user, tokens, out)
    if settings.env.get("SUBRELAY_REDIS_URL"):  # replicas share nothing but Redis: the owner's login lives there
        return _save_for_user(settings, OWNER_LOGIN, tokens, out)
    account, previous = save_login(settings.codex_auth_path, tokens)
    print(f"Logged in as {who(account)}. The login is in {settings.codex_auth_path} (shared with the Codex CLI); "
          "a running subrelay uses it at once.", file=out)
    if previous is not None and previous.account_id and previous.account_id != account.account_id:
        print(f"This replaced the login of another account: {who(previous)}.", file=out)
    return 0


def _check_user(settings: Settings, user: str) -> str | None:
    """Why ``user`` cannot be logged in (before anyone spends time in a browser), or None."""
    async def check() -> str | None:
        team = open_team(settings.env)
        if team is None:
            return "no team store yet (run `subrelay users add NAME` first)."
        try:
            return None if await team.store.get_user(user) else f"no user named {user!r} (see `subrelay users list`)."
        finally:
            await team.store.close()

    return asyncio.run(check())


def _save_for_user(settings: Settings, user: str, tokens: dict, out) -> int:
    """``subrelay login --user NAME``: an admin at a terminal logs a person in; the login is sealed
    into the team store as theirs (the admin never sees it, and it signs nobody else's requests)."""
    if not _saved_in_store(settings, lambda team: save_user_login(
            team, user, tokens, shared_account=settings.file.identity.shared_account,
            owner_auth_path=settings.codex_auth_path), out):
        return 1
    if user.startswith("_"):
        print(f"Logged in as {who(describe(tokens))}; the login is sealed in the shared store (SUBRELAY_REDIS_URL), "
              "where every replica uses it.", file=out)
    else:
        print(f"Logged in {user} as {who(describe(tokens))}; the login is sealed in the team store and signs only "
              f"{user}'s requests.", file=out)
    return 0


def login_with_access_token(settings: Settings, *, user: str | None = None, stdin=None, out=sys.stderr) -> int:
    """``subrelay login --with-access-token``: a Codex personal access token from stdin (when it is not a
    terminal) or ``CODEX_ACCESS_TOKEN``, never from the command line, where ``ps`` shows it. whoami
    names the account before anything is saved, so a mistyped or revoked token is refused here."""
    stdin = sys.stdin if stdin is None else stdin
    if user is not None:
        problem = _check_user(settings, user)
        if problem:
            print(f"subrelay: {problem}", file=out)
            return 2
    if not stdin.isatty():
        text, origin = stdin.read(access_token.MAX_LENGTH + 2), "stdin"
    else:
        text, origin = settings.env.get("CODEX_ACCESS_TOKEN", ""), "CODEX_ACCESS_TOKEN"
    try:
        token = access_token.checked_token(text)
        account = asyncio.run(access_token.whoami(None, settings.auth_base_url, token, "the token given"))
    except ProxyError as exc:
        print(f"subrelay: login failed ({origin}): {exc.message}", file=out)
        if origin == "CODEX_ACCESS_TOKEN" and exc.code == "missing_access_token":
            print("Pipe it in: printenv CODEX_ACCESS_TOKEN | subrelay login --with-access-token", file=out)
        return 1
    named = who(Account(account.email, account.plan_type, account.account_id, None))
    if user is not None or settings.env.get("SUBRELAY_REDIS_URL"):
        if not _saved_in_store(settings, lambda team: save_user_access_token(
                team, user or OWNER_LOGIN, token, account, shared_account=settings.file.identity.shared_account,
                owner_auth_path=settings.codex_auth_path), out):
            return 1
        whose = f"{user}'s requests only" if user else "the owner's requests on every replica"
        print(f"Logged in with a Codex access token as {named}, account {account.account_id}; it is sealed in the "
              f"team store and signs {whose}.", file=out)
        return 0
    try:
        save_access_token(settings.codex_auth_path, token)
    except ProxyError as exc:
        print(f"subrelay: the login could not be saved: {exc.message}", file=out)
        return 1
    print(f"Logged in with a Codex access token as {named}, account {account.account_id}. It is in "
          f"{settings.codex_auth_path} (as `codex login --with-access-token` writes it); a running subrelay uses it "
          "at once. Access tokens are not refreshed: when this one is revoked or expires, log in again.", file=out)
    return 0


def _saved_in_store(settings: Settings, save, out) -> bool:
    """Run ``save(team)`` against the team store (closed after); False, said on ``out``, when it fails."""
    async def run() -> None:
        team = open_team(settings.env)
        team.seal = settings.file.identity.seal  # "member": refused here (only the member can seal theirs)
        try:
            await save(team)
        finally:
            await team.store.close()

    try:
        asyncio.run(run())
    except ProxyError as exc:
        print(f"subrelay: the login could not be saved: {exc.message}", file=out)
        return False
    return True
