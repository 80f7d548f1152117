"""State shared beyond one request, behind small interfaces: cooldowns and the ``previous_response_id``
record. The in-memory form serves one worker; :mod:`.local` shares it between the workers of one host
through files; a Redis backend is a sibling of :mod:`.local`."""
