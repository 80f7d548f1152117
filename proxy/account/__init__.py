"""The account surface: who is logged in and how much of the plan is left (:mod:`.status`), the
account API the page and the Codex CLI's ``/status`` read (:mod:`.api`), and the page itself."""
