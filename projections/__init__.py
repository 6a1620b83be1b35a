"""Projectors and the read-model schema they own."""
