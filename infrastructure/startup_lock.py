"""One process at a time creates the tables of a database.

``CREATE TABLE IF NOT EXISTS`` (and SQLAlchemy's check-then-create) are not safe
against a concurrent twin: on PostgreSQL the loser fails with a unique violation
in the catalogue. Services and projectors started together on a fresh database
(serve-commands, serve-queries and projections run, say) would then crash at
random. Building under this lock makes their start-up orderly.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo

from infrastructure.settings import Settings


def _advisory_key(dbname: str, schema: str) -> int:
    digest = hashlib.sha256(f"theplaylist-startup:{dbname}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def startup_lock(settings: Settings) -> Iterator[None]:
    """Hold, for the block, the lock that serialises start-ups on this database.

    PostgreSQL: a session advisory lock keyed by database and schema (freed by the
    server if the process dies). SQLite: an exclusive ``flock`` on a file of the
    data dir (freed by the kernel if the process dies).
    """
    if settings.uses_postgres:
        pg = settings.postgres_parts()
        key = _advisory_key(pg["dbname"], settings.database_schema)
        with psycopg.connect(make_conninfo(**pg), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / ".startup.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
