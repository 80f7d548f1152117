"""The terminal side of ``subrelay login`` (the browser, paste and device flows of :mod:`proxy.login.oauth`)
and ``subrelay logout``. The command itself, which may save into the team store, is
:mod:`proxy.account.login_command`: this layer stays below the team and the account surface."""

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
from proxy.login.store import Account, remove_login

LOGIN_TIMEOUT = 600.0  # a login not completed in ten minutes is abandoned


def logout(settings: Settings, out=sys.stderr) -> int:
    if remove_login(settings.codex_auth_path):
        print(f"Logged out: removed {settings.codex_auth_path}.", file=out)
    else:
        print(f"No login at {settings.codex_auth_path}.", file=out)
    return 0


def who(account: Account) -> str:
    plan = f", {account.plan.capitalize()} plan" if account.plan else ""
    return f"{account.email or 'an unknown email'}{plan}"


async def browser_tokens(settings: Settings, no_browser: bool, paste: bool, out) -> dict:
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


async def device_tokens(settings: Settings, out) -> dict:
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
