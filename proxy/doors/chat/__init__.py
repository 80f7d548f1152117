"""The Chat Completions door: ``POST /v1/chat/completions``."""
