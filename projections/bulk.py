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
Statements are built once per shape and kept: building one per batch cost
SQLAlchemy more than the database spent on a small batch (measured).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, cast, column, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import Executable

Row = Mapping[str, Any]


def _array_param(name: str) -> str:
    """The parameter holding column ``name`` of every row (PostgreSQL)."""
    return f"_rows_{name}"


def _row_param(name: str) -> str:
    """The parameter holding column ``name`` of one row (executemany elsewhere)."""
    return f"_batch_{name}"


def _unnested(table: Table, columns: tuple[str, ...]) -> Any:
    """``unnest(:col1, :col2, ...) AS batch(col1, col2, ...)``, typed like ``table``."""
    arrays = []
    for name in columns:
        array_type = postgresql.ARRAY(table.c[name].type)
        # The cast types every array, including one of NULLs only.
        arrays.append(cast(bindparam(_array_param(name), type_=array_type), array_type))
    typed = [column(name, table.c[name].type) for name in columns]
    return func.unnest(*arrays).table_valued(*typed).render_derived(name="batch")


def _as_arrays(columns: tuple[str, ...], rows: Sequence[Row]) -> dict[str, list[Any]]:
    return {_array_param(name): [row[name] for row in rows] for name in columns}


@functools.cache
def _insert(
    dialect: str, table: Table, columns: tuple[str, ...], add_on_conflict: tuple[str, ...]
) -> Executable:
    keys = [c.name for c in table.primary_key.columns]
    if dialect == "postgresql":
        statement = postgresql.insert(table).from_select(
            list(columns), _unnested(table, columns).select()
        )
        if add_on_conflict:
            return statement.on_conflict_do_update(
                index_elements=keys,
                set_={c: table.c[c] + statement.excluded[c] for c in add_on_conflict},
            )
        return statement
    if add_on_conflict:
        upsert = sqlite.insert(table)
        return upsert.on_conflict_do_update(
            index_elements=keys,
            set_={c: table.c[c] + upsert.excluded[c] for c in add_on_conflict},
        )
    return insert(table)


@functools.cache
def _update(
    dialect: str,
    table: Table,
    columns: tuple[str, ...],
    add: tuple[str, ...],
    assign: tuple[str, ...],
) -> Executable:
    (key,) = table.primary_key.columns
    batch: Mapping[str, Any]
    if dialect == "postgresql":
        relation = _unnested(table, columns)
        batch = relation.c
        where = key == relation.c[key.name]
    else:
        batch = {name: bindparam(_row_param(name), type_=table.c[name].type) for name in columns}
        where = key == batch[key.name]
    values = {c: table.c[c] + batch[c] for c in add} | {c: batch[c] for c in assign}
    return update(table).where(where).values(values)


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
    columns = tuple(rows[0])
    dialect = conn.dialect.name
    statement = _insert(dialect, table, columns, tuple(add_on_conflict))
    if dialect == "postgresql":
        conn.execute(statement, _as_arrays(columns, rows))
    else:
        conn.execute(statement, list(rows))


def update_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Row],
    *,
    add: Sequence[str] = (),
    assign: Sequence[str] = (),
) -> None:
    """Update the rows of ``table`` whose primary key each of ``rows`` names.

    Each row holds the primary key and a value for each column named in
    ``add`` (added to the stored value: ``plays = plays + :plays``) or in
    ``assign`` (stored as is). Keys must be distinct.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    dialect = conn.dialect.name
    statement = _update(dialect, table, columns, tuple(add), tuple(assign))
    if dialect == "postgresql":
        conn.execute(statement, _as_arrays(columns, rows))
    else:
        conn.execute(statement, [{_row_param(k): v for k, v in row.items()} for row in rows])
