"""``subrelay login`` and ``subrelay logout``: the flows of :mod:`proxy.login.oauth` at a terminal."""

from __future__ import annotations

import asyncio
import html
import sys
import webbrowser
from urllib.parse import urlparse

import httpx

from proxy.config.settings import Settings
from proxy.errors import ProxyError
from proxy.login.oauth import (
    BrowserLogin,
    LoginPending,
    browser_login,
    code_from_redirect,
    exchange_code,
    poll_device_login,
    start_device_login,
)
import proxy.credentials.access_token as access_token
from proxy.login.store import Account, remove_login, save_access_token, save_login

LOGIN_TIMEOUT = 600.0  # a login not completed in ten minutes is abandoned


def login(settings: Settings, *, device: bool, no_browser: bool, paste: bool, out=sys.stderr,
          user: str | None = None) -> int:
    if user is not None:
        problem = _check_user(settings, user)
        if problem:
            print(f"subrelay: {problem}", file=out)
            return 2
    try:
        tokens = asyncio.run(_device(settings, out) if device else _browser(settings, no_browser, paste, out))
    except ProxyError as exc:
        print(f"subrelay: login failed: {exc.message}", file=out)
        return 1
    except (TimeoutError, KeyboardInterrupt):
        print("subrelay: login abandoned.", file=out)
        return 1
    if user is not None:
        return _save_for_user(settings, user, tokens, out)
    if settings.env.get("SUBRELAY_REDIS_URL"):  # replicas share nothing but Redis: the owner's login lives there
        from proxy.state.team import OWNER_LOGIN

        return _save_for_user(settings, OWNER_LOGIN, tokens, out)
    account, previous = save_login(settings.codex_auth_path, tokens)
    print(f"Logged in as {_who(account)}. The login is in {settings.codex_auth_path} (shared with the Codex CLI); "
          "a running subrelay uses it at once.", file=out)
    if previous is not None and previous.account_id and previous.account_id != account.account_id:
        print(f"This replaced the login of another account: {_who(previous)}.", file=out)
    return 0


def _check_user(settings: Settings, user: str) -> str | None:
    """Why ``user`` cannot be logged in (before anyone spends time in a browser), or None."""
    from proxy.team.context import open_team

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
    from proxy.login.store import describe
    from proxy.account.team_member import save_user_login

    if not _saved_in_store(settings, lambda team: save_user_login(
            team, user, tokens, shared_account=settings.file.identity.shared_account,
            owner_auth_path=settings.codex_auth_path), out):
        return 1
    if user.startswith("_"):
        print(f"Logged in as {_who(describe(tokens))}; the login is sealed in the shared store (SUBRELAY_REDIS_URL), "
              "where every replica uses it.", file=out)
    else:
        print(f"Logged in {user} as {_who(describe(tokens))}; the login is sealed in the team store and signs only "
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
    who = _who(Account(account.email, account.plan_type, account.account_id, None))
    if user is not None or settings.env.get("SUBRELAY_REDIS_URL"):
        from proxy.account.team_member import save_user_access_token
        from proxy.state.team import OWNER_LOGIN

        if not _saved_in_store(settings, lambda team: save_user_access_token(
                team, user or OWNER_LOGIN, token, account, shared_account=settings.file.identity.shared_account,
                owner_auth_path=settings.codex_auth_path), out):
            return 1
        whose = f"{user}'s requests only" if user else "the owner's requests on every replica"
        print(f"Logged in with a Codex access token as {who}, account {account.account_id}; it is sealed in the "
              f"team store and signs {whose}.", file=out)
        return 0
    try:
        save_access_token(settings.codex_auth_path, token)
    except ProxyError as exc:
        print(f"subrelay: the login could not be saved: {exc.message}", file=out)
        return 1
    print(f"Logged in with a Codex access token as {who}, account {account.account_id}. It is in "
          f"{settings.codex_auth_path} (as `codex login --with-access-token` writes it); a running subrelay uses it "
          "at once. Access tokens are not refreshed: when this one is revoked or expires, log in again.", file=out)
    return 0


def _saved_in_store(settings: Settings, save, out) -> bool:
    """Run ``save(team)`` against the team store (closed after); False, said on ``out``, when it fails."""
    from proxy.team.context import open_team

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


def logout(settings: Settings, out=sys.stderr) -> int:
    if remove_login(settings.codex_auth_path):
        print(f"Logged out: removed {settings.codex_auth_path}.", file=out)
    else:
        print(f"No login at {settings.codex_auth_path}.", file=out)
    return 0


def _who(account: Account) -> str:
    plan = f", {account.plan.capitalize()} plan" if account.plan else ""
    return f"{account.email or 'an unknown email'}{plan}"


async def _browser(settings: Settings, no_browser: bool, paste: bool, out) -> dict:
    redirect_uri = f"http://localhost:{settings.login_port}/auth/callback"
    flow = browser_login(settings.auth_base_url, redirect_uri)
    async with httpx.AsyncClient() as http:
        if paste:
            print(f"Open this address in a browser on any machine and sign in:\n\n  {flow.url}\n\nThen paste the whole "
                  "address the browser ends on (it starts with http://localhost:…, and may show an error page):", file=out)
            line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline), LOGIN_TIMEOUT)
            code = code_from_redirect(flow, line)
        else:
            code = await _wait_for_callback(flow, settings.login_port, no_browser, out)
        return await exchange_code(http, settings.codex_token_url, code, flow.verifier, flow.redirect_uri)


async def _wait_for_callback(flow: BrowserLogin, port: int, no_browser: bool, out) -> str:
    """Serve ``/auth/callback`` on 127.0.0.1 until the browser comes back with the code."""
    result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            if urlparse(target).path != "/auth/callback":
                _answer(writer, 404, "Not found.")
                return
            try:
                code = code_from_redirect(flow, "http://localhost" + target)
            except ProxyError as exc:
                _answer(writer, 400, exc.message)
                if exc.code != "state_mismatch" and not result.done():
                    result.set_exception(exc)
                return
            _answer(writer, 200, "Signed in. You can close this tab and go back to the terminal.")
            if not result.done():
                result.set_result(code)
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            await writer.drain()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        print(f"Sign in to ChatGPT in your browser:\n\n  {flow.url}\n\nWaiting for the browser to come back to "
              f"http://localhost:{port}/auth/callback …", file=out, flush=True)
        if not no_browser:
            webbrowser.open(flow.url)
        return await asyncio.wait_for(result, LOGIN_TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()


def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = f"<!doctype html><meta charset=utf-8><title>subrelay</title><p id=result>{html.escape(text)}</p>".encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode() + body)


async def _device(settings: Settings, out) -> dict:
    async with httpx.AsyncClient() as http:
        device = await start_device_login(http, settings.auth_base_url)
        print(f"To sign in, open {device.verification_uri} on any device and enter the code:\n\n    {device.user_code}\n",
              file=out, flush=True)
        interval = device.interval
        while True:
            await asyncio.sleep(interval)
            try:
                return await poll_device_login(http, settings.auth_base_url, settings.codex_token_url, device)
            except LoginPending as pending:
                if pending.slow_down:
                    interval += 5
                print(".", end="", file=out, flush=True)
