"""SQLAlchemy engines for the read models (and the key vault), same kind as the event store."""

from __future__ import annotations

from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from infrastructure.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a projector writes; secure_delete zeroes freed
    # pages, so deleted personal data does not linger in the file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# psycopg prepares a statement on its fifth run, and PostgreSQL then settles on
# a generic plan, blind to the values: a track search (LIKE patterns, one word
# matching every track) went from 6 to 23 ms that way, measured on 100,000
# tracks. Planning for the values costs a fraction of a millisecond.
_CUSTOM_PLANS = "-cplan_cache_mode=force_custom_plan"


def create_database_engine(settings: Settings, name: str, *, pool_size: int = 5) -> Engine:
    """An engine for one store (``readmodels``, ``vault``).

    SQLite: one file per store under the data dir. PostgreSQL: the configured
    database, with ``search_path`` set to the configured schema.
    """
    if not settings.uses_postgres:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.data_dir / f"{name}.sqlite3").resolve()
        engine = create_engine(
            f"sqlite+pysqlite:///{path}",
            pool_size=pool_size,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Statement parameters can be personal data: keep them out of errors and logs.
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    pg = settings.postgres_parts()
    url = URL.create(
        "postgresql+psycopg",
        username=pg["user"] or None,
        password=pg["password"] or None,
        host=pg["host"],
        port=int(pg["port"]),
        database=pg["dbname"],
    )
    engine = create_engine(
        url,
        pool_size=pool_size,
        # Connections past the pool are closed when returned: bursts only.
        max_overflow=pool_size,
        # No ping before each checkout: it was a round trip per query (13-19% of a
        # loaded query service's busy time, measured). A dropped connection fails
        # one query instead (answered 503 database_unavailable), which also
        # invalidates the rest of the pool; idle ones are recycled before a
        # firewall or server timeout can cut them.
        pool_pre_ping=False,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={
            # In UTC, timestamps arrive as the read models want them (UtcDateTime).
            "options": f"-csearch_path={settings.database_schema} -cTimeZone=UTC {_CUSTOM_PLANS}",
            # Tells operators (pg_stat_activity) which pool of which schema a connection is.
            "application_name": f"theplaylist-{name}-{settings.database_schema}"[:63],
        },
    )
    event.listen(engine, "connect", _binary_arrays)
    return engine


def _binary_arrays(dbapi_connection: Any, _record: Any) -> None:
    # Projectors send a batch's rows as one array per column (projections.bulk).
    # psycopg's default text form quotes every element with a regular expression:
    # a third of a rebuild's CPU, measured. The binary form has no quoting.
    dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)
