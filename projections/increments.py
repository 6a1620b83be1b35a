"""Counter increments gathered over a batch and written set-based, one statement per table.

Counters (likes, plays...) change with most events of the log. Written one
``UPDATE ... SET plays = plays + 1`` per event, they cost a statement each;
summed per row over a batch, they cost one statement for the lot
(see :mod:`projections.bulk`). The
sums are still applied as increments (``plays = plays + :delta``), never as
values computed in Python, so they stay exact whatever else writes the rows.

Log order is kept: the gathered increments are written before any other
handler of the batch runs (an insert of the row, a delete...), and at the end
of the batch, inside the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic
from sqlalchemy import Connection, Table

from projections.bulk import update_rows

F = TypeVar("F", bound=Callable[..., Any])

_PENDING = "theplaylist.increments"


def increments_only(handler: F) -> F:
    """Mark a handler whose only writes go through :meth:`IncrementBatching.increment`."""
    handler.__dict__["_increments_only"] = True
    return handler


class Increments:
    """Deltas per table, row and column, waiting to be written."""

    def __init__(self) -> None:
        self._tables: dict[Table, dict[Any, dict[str, int]]] = {}

    def add(self, table: Table, row_id: Any, column: str, delta: int) -> None:
        """Gather ``delta`` for ``column`` of the row ``row_id``."""
        row = self._tables.setdefault(table, {}).setdefault(row_id, {})
        row[column] = row.get(column, 0) + delta

    def flush(self, conn: Connection) -> None:
        """Write every gathered delta: one statement per table."""
        for table, rows in self._tables.items():
            columns = sorted({column for row in rows.values() for column in row})
            (key,) = table.primary_key.columns
            batch = [
                {key.name: row_id, **{c: row.get(c, 0) for c in columns}}
                for row_id, row in rows.items()
            ]
            update_rows(conn, table, batch, add=columns)
        self._tables.clear()


class IncrementBatching:
    """Mix into a projector (before ``Projector``) whose counter handlers are marked.

    Handlers marked with :func:`increments_only` call :meth:`increment`;
    the others run as usual, after the increments gathered so far are written.
    """

    _handlers: dict[str, Callable[[Any, Connection, Any], None]]

    def apply(self, conn: Connection, events: Sequence[DomainEventProtocol[Any]]) -> None:
        """Apply a batch in log order, counters summed between other writes."""
        pending = Increments()
        # Kept on the connection: one batch per connection at a time, whatever
        # number of runners share this projector.
        conn.info[_PENDING] = pending
        try:
            for domain_event in events:
                handler = self._handlers[get_topic(type(domain_event))]
                if not getattr(handler, "_increments_only", False):
                    pending.flush(conn)
                handler(self, conn, domain_event)
            pending.flush(conn)
        finally:
            conn.info.pop(_PENDING, None)

    @staticmethod
    def increment(conn: Connection, table: Table, row_id: Any, column: str, delta: int) -> None:
        """Add ``delta`` to ``column`` of the row; gathered during a batch, else written now."""
        pending: Increments | None = conn.info.get(_PENDING)
        if pending is not None:
            pending.add(table, row_id, column, delta)
            return
        single = Increments()
        single.add(table, row_id, column, delta)
        single.flush(conn)
