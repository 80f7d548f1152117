"""Team mode: who is calling (:mod:`.caller`), people and their client keys, their own logins, limits
and usage. Storage is :mod:`proxy.state`'s (one interface, a local SQLite backend and a Redis one)."""
