"""The ways in: the command API, the query API, the CLI. Thin: parse, call, map errors."""
