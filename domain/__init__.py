"""The domain model: aggregates, their events and invariants. Pure Python, no I/O."""
