"""Read-only queries over the read models: typed rows, never aggregates."""
