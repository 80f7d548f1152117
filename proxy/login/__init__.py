"""Logging a person into their ChatGPT plan without the Codex CLI (fact sheet login.md)."""
