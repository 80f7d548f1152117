"""``subrelay setup CLIENT``: write a client's own configuration for this subrelay, then prove it works.

One module per client (``codex``, ``claude_code``, ``opencode``, ``aider``, ``sdk_env``) knows where
that client keeps its configuration (honouring the client's own home variables) and what to put
there; ``target`` asks the running subrelay what it serves; ``backups`` writes files with a backup
of what was there, so ``--undo`` restores it byte for byte; ``probe`` runs the real client with a
request that costs nothing and says exactly what went wrong. ``command`` ties them to the CLI.
"""
