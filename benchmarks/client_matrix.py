"""A client × version × feature table from the client tests.

Runs the end-to-end client tests (the npm clients on Node 22, and the Python SDKs' client tests)
with a JUnit report, then prints one row per test: the client it drives, the version that ran (the
npm versions from ``tests/artifacts/npm-clients.json``, the Python ones from the installed
packages) and the outcome. ``--markdown`` prints the table for benchmarks/README.md.

    python benchmarks/client_matrix.py [--markdown]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/clients/test_npm_clients.py", "tests/doors/chat/test_e2e_clients.py",
         "tests/doors/responses/test_e2e_clients.py", "tests/doors/messages/test_e2e.py"]
# Which client a test drives, by words in its name (first match wins), then by its file.
CLIENTS = [("codex_cli", "@openai/codex"), ("claude_code", "@anthropic-ai/claude-code"),
           ("openai_node", "openai (node)"), ("agents", "openai-agents"), ("langchain", "langchain-openai"),
           ("anthropic", "anthropic")]
BY_FILE = {"test_npm_clients": "openai (node)", "test_e2e_clients": "openai", "test_e2e": "anthropic"}
PYTHON = {"openai": "openai", "openai-agents": "openai-agents", "langchain-openai": "langchain-openai",
          "anthropic": "anthropic"}


def _client(name: str, file: str) -> str:
    for word, client in CLIENTS:
        if word in name:
            return client
    return BY_FILE.get(file, file)


def _version(client: str, npm: dict) -> str:
    packages = npm.get("packages", {})
    key = "openai" if client == "openai (node)" else client
    if client in ("@openai/codex", "@anthropic-ai/claude-code", "openai (node)") and key in packages:
        return f"{packages[key]['version']} ({npm.get('source', '?')})"
    try:
        return metadata.version(PYTHON.get(client, client))
    except metadata.PackageNotFoundError:
        return "?"


def run() -> list[tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *TESTS],
                       cwd=ROOT, capture_output=True, text=True, timeout=3000)
        tree = ET.parse(report)
    npm = json.loads((ROOT / "tests/artifacts/npm-clients.json").read_text()) if \
        (ROOT / "tests/artifacts/npm-clients.json").exists() else {}
    rows = []
    for case in tree.iter("testcase"):
        name, file = case.get("name", ""), case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "fail" if case.find("failure") is not None or case.find("error") is not None else \
            "skip" if case.find("skipped") is not None else "pass"
        client = _client(name, file)
        feature = name.removeprefix("test_").replace("_", " ")
        rows.append((client, _version(client, npm), feature, outcome))
    return sorted(rows)


def main() -> None:
    rows = run()
    if "--markdown" in sys.argv:
        print("| client | version | feature | result |\n|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))


if __name__ == "__main__":
    main()
