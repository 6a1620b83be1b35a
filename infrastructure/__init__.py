"""Adapters: event store configuration, databases, crypto, tokens, settings."""
