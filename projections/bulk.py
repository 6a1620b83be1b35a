"""Many rows in one statement: on PostgreSQL, one array per column, unnested.

A projector's batch writes thousands of rows. An ``executemany`` sends a
statement per row (psycopg pipelines them, but each row is still bound,
sent, parsed and executed on its own, and SQLAlchemy builds its parameters
one by one). On PostgreSQL the rows travel instead as one array per column,
which ``unnest`` turns back into a relation: one statement for the lot, to
insert from, upsert from, or update from. SQLite runs in process, where
``executemany`` costs little, and keeps it.

Each helper writes exactly what the same rows written one by one would
(same columns, same conflicts, same increments), only in fewer statements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, cast, column, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

Row = Mapping[str, Any]
Assignments = Callable[[Mapping[str, ColumnElement[Any]]], Mapping[str, ColumnElement[Any]]]
"""Given the batch's columns by name, the table's new values by column name."""


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _unnested(table: Table, columns: Sequence[str], rows: Sequence[Row]) -> Any:
    """``unnest(col1[], col2[], ...) AS batch(col1, col2, ...)``, typed like ``table``."""
    arrays = []
    for name in columns:
        array_type = postgresql.ARRAY(table.c[name].type)
        values = [row[name] for row in rows]
        # The cast types every array, including one of NULLs only.
        arrays.append(cast(bindparam(None, values, type_=array_type), array_type))
    typed = [column(name, table.c[name].type) for name in columns]
    return func.unnest(*arrays).table_valued(*typed).render_derived(name="batch")


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[Row], *, add_on_conflict: Sequence[str] = ()
) -> None:
    """Insert ``rows`` (dicts with the same keys).

    With ``add_on_conflict``, a row whose primary key is already stored adds
    those columns to the stored ones instead (the rows must then have
    distinct keys, as one statement cannot change a row twice).
    """
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    if _is_postgres(conn):
        columns = list(rows[0])
        batch = _unnested(table, columns, rows)
        statement = postgresql.insert(table).from_select(columns, batch.select())
        if add_on_conflict:
            statement = statement.on_conflict_do_update(
                index_elements=keys,
                set_={c: table.c[c] + statement.excluded[c] for c in add_on_conflict},
            )
        conn.execute(statement)
        return
    if add_on_conflict:
        upsert = sqlite.insert(table)
        upsert = upsert.on_conflict_do_update(
            index_elements=keys,
            set_={c: table.c[c] + upsert.excluded[c] for c in add_on_conflict},
        )
        conn.execute(upsert, list(rows))
    else:
        conn.execute(insert(table), list(rows))


def update_rows(
    conn: Connection, table: Table, rows: Sequence[Row], assignments: Assignments
) -> None:
    """Update the rows of ``table`` whose primary key each of ``rows`` names.

    Each row holds the primary key column and the values ``assignments``
    uses: it gets them as columns (``batch["plays"]``) and returns the new
    values (``{"plays": table.c.plays + batch["plays"]}``). Keys must be distinct.
    """
    if not rows:
        return
    (key,) = table.primary_key.columns
    columns = list(rows[0])
    if _is_postgres(conn):
        batch = _unnested(table, columns, rows)
        values = assignments({name: batch.c[name] for name in columns})
        conn.execute(update(table).where(key == batch.c[key.name]).values(values))
        return
    params = {name: bindparam(f"_batch_{name}", type_=table.c[name].type) for name in columns}
    statement = update(table).where(key == params[key.name]).values(assignments(params))
    conn.execute(statement, [{f"_batch_{k}": v for k, v in row.items()} for row in rows])
