"""Every example in README.md and docs/*.md stays true: each fenced block is run or checked here.

- ``python`` blocks run against a live subrelay in front of the mock Codex backend (the address in the
  example is rewritten to the test server's);
- ``toml`` blocks parse, and a ``subrelay.toml`` example loads as subrelay's own config;
- ``bash``/``sh`` blocks are split into commands: ``subrelay …`` is parsed by the real command-line
  parser, ``curl …`` is replayed against the live server (its status must be a success), ``export``
  names a variable subrelay or a documented client reads, and the few other programs a recipe uses
  (git, systemctl, claude, codex, …) are allowed by name, with the repository paths they name existing.

A block this file cannot run is preceded in its page by ``<!-- checked by tests/<file>.py -->``
naming the test that runs it; that file must exist. A page added to docs/ is picked up at once."""

from __future__ import annotations

import contextlib
import re
import shlex
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from proxy.config.file import parse_config
from proxy.server.app import create_app
from proxy.server.cli import build_parser
from tests.mock_upstream import ServerThread

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ADMIN_KEY = "admin-" + "D0c" * 10
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
CHECKED_BY = re.compile(r"<!--\s*checked by (?P<path>tests/\S+?\.py)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    checked_by: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            indent = match["indent"]
            body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                             for line in match["body"].splitlines())
            before = text[:match.start()].rstrip().splitlines()
            marker = CHECKED_BY.search(before[-1]) if before else None
            found.append(Block(page, text.count("\n", 0, match.start()) + 1, match["lang"], body,
                               marker["path"] if marker else None))
    return found


BLOCKS = blocks()


@pytest.fixture(scope="module")
def docs_proxy(_mock_server, tmp_path_factory):
    """subrelay as the docs' reader runs it: the mock Codex backend logged in, the admin key set."""
    with _served(_mock_server, tmp_path_factory.mktemp("docs")) as url:
        yield url


@contextlib.contextmanager
def _served(_mock_server, base: Path):
    from tests.conftest import write_auth_file

    auth = base / "auth.json"
    write_auth_file(str(auth), _mock_server.app.state.auth_file())
    from proxy.config.settings import Settings

    settings = Settings(codex_base_url=f"{_mock_server.url}/backend-api/codex",
                        codex_token_url=f"{_mock_server.url}/oauth/token", codex_auth_path=str(auth),
                        admin_key=ADMIN_KEY, env={"SUBRELAY_STATE_DIR": str(base / "state")})
    with ServerThread(create_app(settings)) as thread:
        yield thread.url


def _local(text: str, base: str) -> str:
    return text.replace("http://127.0.0.1:8787", base)


# -- python -------------------------------------------------------------------------------------------


def _run_python(block: Block, base: str) -> None:
    source = _local(block.body, base)
    code = compile(source, block.name, "exec")
    for module in re.findall(r"^\s*(?:from|import) ([\w.]+)", source, re.M):
        pytest.importorskip(module.split(".")[0], reason=f"{block.name} needs {module}")
    exec(code, {"__name__": "__doc_example__"})


# -- toml ---------------------------------------------------------------------------------------------


def _check_toml(block: Block) -> None:
    data = tomllib.loads(block.body)
    if "providers" in data or "aliases" in data or "fallbacks" in data:
        parse_config(data, block.name)


# -- shell --------------------------------------------------------------------------------------------

# Variables the documented clients read (besides every variable in docs/configuration.md's table).
CLIENT_VARIABLES = {"ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL",
                    "CLAUDE_CODE_MAX_CONTEXT_TOKENS", "SUBRELAY_API_KEY", "CODEX_API_KEY", "OPENAI_API_KEY"}
# Programs a recipe runs that these tests do not: allowed by name (their repository paths must exist).
OTHER_PROGRAMS = {"git", "systemctl", "journalctl", "mkdir", "cp", "claude", "codex", "docker", "kubectl",
                  "redis-server", "haproxy", "source", "cd"}
SUBSTITUTIONS = {"$(codex --version | cut -d' ' -f2)": "0.171.0", "$SUBRELAY_ADMIN_KEY": ADMIN_KEY,
                 "$SUBRELAY_REDIS_URL": "redis://127.0.0.1:6379/0"}


def documented_variables() -> set[str]:
    table = (ROOT / "docs" / "configuration.md").read_text()
    return set(re.findall(r"^\|[^|\n]*?`([A-Z][A-Z0-9_]+)`", table, re.M)) | set(
        re.findall(r"`([A-Z][A-Z0-9_]{3,})`", table))


def commands(body: str) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments dropped, ``&&``, ``;``
    and ``|`` separating commands, ``$(…)`` substitutions run as commands of their own."""
    text = re.sub(r"\\\n\s*", " ", body)
    for found, value in SUBSTITUTIONS.items():
        text = text.replace(found, value)
    out: list[list[str]] = []
    for line in text.splitlines():
        line, inner = _substitutions(line)
        for part in [line, *inner]:
            current: list[str] = []
            for token in shlex.split(part, comments=True):
                if token in ("&&", ";", "|", "||"):
                    out.append(current)
                    current = []
                else:
                    current.append(token)
            out.append(current)
    return [command for command in out if command]


def _substitutions(line: str) -> tuple[str, list[str]]:
    """``line`` with each ``$(…)`` replaced by a word, and the commands inside (parentheses within
    quotes do not end one)."""
    inner, out, index = [], [], 0
    while (start := line.find("$(", index)) >= 0:
        depth, quote, at = 1, None, start + 2
        while at < len(line) and depth:
            char = line[at]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            at += 1
        out.append(line[index:start] + "SUBSTITUTED")
        inner.append(line[start + 2:at - 1])
        index = at
    return "".join(out) + line[index:], inner


def _run_shell(block: Block, base: str) -> None:
    known = documented_variables() | CLIENT_VARIABLES
    for command in commands(block.body):
        while command and re.match(r"^[A-Z_][A-Z0-9_]*=", command[0]):
            name = command.pop(0).split("=", 1)[0]
            assert name in known, f"{block.name}: {name} is documented nowhere in docs/configuration.md"
        if not command:
            continue
        program, args = command[0], command[1:]
        where = f"{block.name}: {shlex.join(command)}"
        if program in (".venv/bin/subrelay", "subrelay"):
            try:
                build_parser().parse_args(args)
            except SystemExit as exc:
                raise AssertionError(f"{where}: the command line is refused by subrelay's parser") from exc
        elif program == "curl":
            _replay_curl(args, base, where)
        elif program == "export":
            for assignment in args:
                name = assignment.split("=", 1)[0]
                assert name in known, f"{where}: {name} is documented nowhere in docs/configuration.md"
        elif program == "python3":
            assert args[:2] == ["-m", "venv"], where
        elif program in (".venv/bin/python", "python"):
            if args[:1] == ["-c"]:
                compile(args[1], where, "exec")
            else:
                assert args[:1] == ["-m"], where
        elif program == ".venv/bin/pip":
            _check_pip(args, where)
        elif program == ".venv/bin/pytest":
            pass
        elif program in OTHER_PROGRAMS:
            for arg in args:
                if re.match(r"^(deploy|tests|benchmarks|adapters|proxy)/", arg):
                    assert (ROOT / arg).exists(), f"{where}: {arg} does not exist"
        else:
            raise AssertionError(f"{where}: {program} is a program tests/docs/test_examples.py cannot check; "
                                 "teach it, or mark the block <!-- checked by tests/….py -->")


def _check_pip(args: list[str], where: str) -> None:
    assert args[:1] == ["install"], where
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for arg in args[1:]:
        extras = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
        if extras:
            for extra in extras[1].split(","):
                assert extra in project["optional-dependencies"], f"{where}: no extra {extra!r} in pyproject.toml"


def _replay_curl(args: list[str], base: str, where: str) -> None:
    """The request curl would send, sent with httpx; curl's output options are ignored."""
    headers: dict[str, str] = {}
    data = None
    url = None
    flags = iter(args)
    for arg in flags:
        if arg == "-H":
            name, _, value = next(flags).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(flags)
        elif arg == "-o":
            next(flags)
        elif arg.startswith("-"):
            assert arg in ("-s", "-N", "-sS", "-f"), f"{where}: curl {arg} is not replayed"
        else:
            url = _local(arg, base)
    assert url and url.startswith(base), f"{where}: not an address on subrelay"
    response = httpx.request("POST" if data is not None else "GET", url, headers=headers, content=data, timeout=30)
    assert response.status_code < 400, f"{where}: {response.status_code} {response.text[:300]}"


# -- the tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_every_example_runs(block: Block, request):
    if block.checked_by is not None:
        assert (ROOT / block.checked_by).is_file(), f"{block.name}: {block.checked_by} does not exist"
        return
    if block.lang == "toml":
        _check_toml(block)
    elif block.lang == "python":
        _run_python(block, request.getfixturevalue("docs_proxy"))
    elif block.lang in ("bash", "sh", "shell"):
        _run_shell(block, request.getfixturevalue("docs_proxy"))
    else:
        assert block.lang in ("", "text", "json"), f"{block.name}: a ```{block.lang} block is not checked"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(match) for match in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_link_between_the_pages_lands():
    broken = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_docs_index_links_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    missing = [page.name for page in PAGES[1:] if page.name != "README.md" and f"({page.name})" not in index]
    assert not missing, f"docs/README.md does not link {missing}"


def test_every_variable_subrelay_reads_is_in_the_configuration_table():
    read = set()
    for source in (ROOT / "proxy").rglob("*.py"):
        read |= set(re.findall(r"""["'](SUBRELAY_[A-Z0-9_]*[A-Z0-9])["']""", source.read_text()))
    table = set(re.findall(r"^\|[^\n]*", (ROOT / "docs" / "configuration.md").read_text(), re.M))
    named = set(re.findall(r"`(SUBRELAY_[A-Z0-9_]+)`", "\n".join(table)))
    assert read, "the scan found no variable at all"
    assert not read - named, f"read by subrelay but not in docs/configuration.md's table: {sorted(read - named)}"


def test_the_claude_code_recipes_context_window_is_the_catalogues(_mock_server, tmp_path):
    """README's CLAUDE_CODE_MAX_CONTEXT_TOKENS is the context_window subrelay's catalogue gives its model."""
    readme = (ROOT / "README.md").read_text()
    model = re.search(r"export ANTHROPIC_MODEL=(\S+)", readme)[1]
    tokens = int(re.search(r"CLAUDE_CODE_MAX_CONTEXT_TOKENS=(\d+)", readme)[1])
    with _served(_mock_server, tmp_path) as url:  # its own subrelay: the examples above make a team
        catalogue = httpx.get(f"{url}/v1/models?client_version=0.171.0", timeout=30).json()
    entry = next(entry for entry in catalogue["models"] if entry["slug"] == model)
    assert entry["context_window"] == tokens
