"""Running it: the Starlette app factory and its one error boundary, the edge (Host, Origin, client
key, body cap), the ``subrelay`` command, and uvicorn with bounds on idle and slow clients."""
