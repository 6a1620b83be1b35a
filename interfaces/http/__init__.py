"""The HTTP interfaces: the command service and the query service (separate ASGI apps)."""
