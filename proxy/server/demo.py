"""``subrelay demo``: subrelay in front of a built-in mock upstream, so every recipe, team mode and the
replica recipe can be tried before logging in anywhere.

The mock is the project's own (``tests/mock_upstream``, the one the test suite runs against), so the demo
runs from a clone of the repository. It plays three upstreams on loopback ports of its own:

- the **Codex backend** and the ChatGPT sign-in server (answers, tool calls, the model catalogue,
  refreshes; ``subrelay login`` signs in against it);
- an **API-key provider** (an OpenAI-compatible Chat Completions server, as the ``openai`` provider);
- the **quota fallback**: each member is signed in as a different ChatGPT account, and the accounts' plans
  are in different states (one nearly full, whose requests move to the API key; one used up).

Everything lives in one demo directory (the state directory, the login file, ``subrelay.toml``); the
command prints the variables that point another terminal (``subrelay users …``, a second replica) at it.
Nothing reaches the network; no real login or key is read (HOME's files are never used).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError

# Members the demo team starts with: (name, ChatGPT account, percent of the 5-hour window used, may fall back).
MEMBERS = (("alice", "acc-alice-demo", 12, False), ("bob", "acc-bob-demo", 97, True), ("carol", "acc-carol-demo", 100, False))
FALLBACK_MODELS = ("gpt-5.5", "gpt-5.4", "gpt-5.4-mini")


@dataclass
class Demo:
    """A running demo's addresses and keys (what the command prints)."""

    directory: str
    env: dict[str, str]  # the variables a `subrelay` command needs to act on this demo
    owner_key: str
    admin_key: str
    member_keys: dict[str, str]
    mocks: list[Any]  # the mock servers' threads, stopped by close()

    def close(self) -> None:
        for thread in self.mocks:
            thread.stop()


def _mock_package():
    """The project's mock upstream, from the checkout this subrelay runs from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests" / "mock_upstream" / "server.py").is_file():
        raise ConfigError("subrelay demo runs from a clone of the repository (it uses tests/mock_upstream); "
                          f"none found beside {root / 'proxy'}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import tests.mock_upstream as mock  # noqa: PLC0415 - only the demo needs the mock
    from tests.mock_upstream.openai_server import MockOpenAIServer  # noqa: PLC0415

    return mock, MockOpenAIServer


def _auth_file(state, email: str, account: str) -> dict[str, Any]:
    tokens = state.issue_tokens(email=email, account=account, expires_in=3600)
    return {"OPENAI_API_KEY": None, "tokens": {**tokens, "account_id": account},
            "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "auth_mode": "chatgpt"}


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _config(openai_url: str, api_key: str) -> str:
    fallbacks = "\n".join(f'"codex/{model}" = ["openai/{model}"]\n"{model}" = ["openai/{model}"]'
                          for model in FALLBACK_MODELS)
    return (f'# Written by `subrelay demo`: the API-key provider is the demo\'s mock.\n'
            f'[providers.codex]\nkind = "codex"\n\n'
            f'[providers.openai]\nkind = "openai"\nbase_url = "{openai_url}/v1"\napi_key = "{api_key}"\n\n'
            f'[fallbacks]\n{fallbacks}\n')


def start(directory: str | None = None, *, team: bool = True) -> Demo:
    """Start the mock upstreams and prepare the demo directory (team, logins, config); subrelay itself is
    then served from :attr:`Demo.env` by the caller."""
    import asyncio

    import orjson

    mock, MockOpenAIServer = _mock_package()
    directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="subrelay-demo-"))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    codex = mock.MockCodexServer()
    codex.state.record = False  # a demo may run for hours: keep no request log
    api = MockOpenAIServer()
    api.state.record = False
    api.state.api_key = "sk-demo-" + secrets.token_hex(16)
    for name, account, used, _ in MEMBERS:
        codex.state.account_windows[account] = {"x-codex-primary-used-percent": str(used)}
        if used >= 100:
            codex.state.limited_accounts.add(account)
    mocks = [mock.ServerThread(codex).start()]
    mocks.append(mock.ServerThread(api).start())
    upstream, openai_url = mocks[0].url, mocks[1].url
    auth_path = os.path.join(directory, "auth.json")
    _write_private(auth_path, orjson.dumps(_auth_file(codex.state, "owner@demo.example", "acc-owner-demo"),
                                           option=orjson.OPT_INDENT_2))
    config_path = os.path.join(directory, "subrelay.toml")
    _write_private(config_path, _config(openai_url, api.state.api_key).encode())
    owner_key = "sr-demo-owner-" + secrets.token_urlsafe(16)
    admin_key = "sr-demo-admin-" + secrets.token_urlsafe(16)
    env = {"SUBRELAY_STATE_DIR": os.path.join(directory, "state"), "CODEX_AUTH_PATH": auth_path,
           "SUBRELAY_CONFIG": config_path, "SUBRELAY_CODEX_BASE_URL": f"{upstream}/backend-api/codex",
           "SUBRELAY_CODEX_TOKEN_URL": f"{upstream}/oauth/token", "SUBRELAY_AUTH_BASE_URL": upstream,
           "SUBRELAY_ADMIN_KEY": admin_key}
    member_keys: dict[str, str] = {}
    if team:
        env["SUBRELAY_API_KEYS"] = owner_key  # team mode: the owner's own requests need a key too
        member_keys = asyncio.run(_make_team(env, codex.state))
    return Demo(directory, env, owner_key if team else "", admin_key, member_keys, mocks)


async def _make_team(env: dict[str, str], state) -> dict[str, str]:
    """The demo team: each member signed in as their own ChatGPT account (sealed in the team store)."""
    from proxy.state.team import new_login_version
    from proxy.team.context import open_team
    from proxy.team.logins import seal_login
    from proxy.team.users import add_user

    team = open_team(env, create=True)
    keys = {}
    try:
        for name, account, used, fallback in MEMBERS:
            if await team.store.get_user(name) is not None:
                continue  # a demo directory used again: its members stay
            _, keys[name] = await add_user(team.store, name, fallback=fallback)
            login = seal_login(team, name, _auth_file(state, f"{name}@demo.example", account), new_login_version())
            await team.store.put_login(name, login, expected_version=None)
            await team.store.put_plan_windows(f"account:{account}", {"primary": {  # as if they had asked before
                "used_percent": float(used), "window_minutes": 300.0, "reset_at": time.time() + 3600}})
    finally:
        await team.close()
    return keys


def describe(demo: Demo, url: str) -> str:
    """What the command prints: where things are, the keys, and what each member shows."""
    exports = " ".join(f"{name}={value}" for name, value in sorted(demo.env.items()))
    lines = [f"subrelay demo: nothing here is real; every upstream is a mock on 127.0.0.1 (files in {demo.directory})",
             f"  API:     {url}/v1   (Anthropic clients: {url})",
             f"  account: {url}/account   admin: {url}/admin (admin key {demo.admin_key})"]
    if demo.owner_key:
        lines.append(f"  owner key (SUBRELAY_API_KEYS): {demo.owner_key}")
    notes = {"alice": "plan 12% used: answered by the Codex mock", "bob": "plan 97% used, may fall back: "
             "answered by the API-key mock (x-subrelay-route says so)", "carol": "plan used up: the plan's own 429"}
    for name, key in demo.member_keys.items():
        lines.append(f"  {name}'s key: {key}   ({notes.get(name, '')})")
    lines += ["Another terminal acts on this demo with (e.g. `subrelay users list`, or a second replica with "
              "`subrelay serve --port 8788`):", f"  export {exports}"]
    return "\n".join(lines)


# Variables that would make the demo reach something real: vendor keys, another login, a shared store.
_REAL = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "XAI_API_KEY", "GROQ_API_KEY", "PERPLEXITY_API_KEY", "GEMINI_API_KEY",
         "GITHUB_TOKEN", "ANTHROPIC_API_KEY", "CODEX_HOME", "CODEX_ACCESS_TOKEN", "SUBRELAY_REDIS_URL",
         "SUBRELAY_REDIS_SENTINELS", "SUBRELAY_SECRET_KEY", "SUBRELAY_SECRET_KEY_PREVIOUS", "SUBRELAY_ANTHROPIC_BASE_URL",
         "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def run(args, serve) -> int:
    """``subrelay demo``: start the mocks, print what is where, serve (``serve``: the command's own, as
    ``subrelay serve`` runs it) until interrupted."""
    from proxy.config.settings import settings_from_env

    for name in _REAL:
        os.environ.pop(name, None)
    demo = start(args.dir, team=not args.single)
    try:
        os.environ.update(demo.env)
        settings = settings_from_env().with_overrides(host=args.host, port=args.port)
        host = settings.host if ":" not in settings.host else f"[{settings.host}]"
        print(describe(demo, f"http://{host}:{settings.port}"), file=sys.stderr, flush=True)
        return serve(settings)
    finally:
        demo.close()


def add_command(commands) -> None:
    demo = commands.add_parser("demo", help="try subrelay with no account: a built-in mock upstream, a demo team",
                               description="Runs subrelay in front of the project's mock upstream (the Codex "
                                           "backend, an API-key provider, a team whose members have different "
                                           "ChatGPT accounts). Nothing real is read or reached.")
    demo.add_argument("--port", type=int, help="port to listen on (default 8787)")
    demo.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--dir", help="keep the demo's files here (default: a new temporary directory)")
    demo.add_argument("--single", action="store_true", help="single-user mode: no team, no keys")
