"""The command service (write side)."""
