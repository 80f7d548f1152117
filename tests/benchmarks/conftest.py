"""The instruction-count smoke's figures, printed at the end of every test run (so CI logs show a regression)."""

from __future__ import annotations

FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in FIGURES:
        terminalreporter.write_line(line)
