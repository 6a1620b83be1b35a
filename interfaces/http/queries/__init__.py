"""The query service (read side)."""
