"""The reactions read model: each user's current reactions to each target (``my_reactions``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.utils import get_topic
from sqlalchemy import Connection, insert, update

from domain.reactions import Reaction
from projections.bulk import insert_rows, update_rows
from projections.projector import Projector, on
from projections.schema import reactions

_FLAG = {"like": "liked", "dislike": "disliked", "love": "loved"}


class ReactionsProjector(Projector):
    """Keeps ``reactions`` in step with the Reaction aggregates (one row per user and target)."""

    name = "reactions"
    version = 1
    tables = (reactions,)

    @on(Reaction.Opened)
    def _opened(self, conn: Connection, event: Any) -> None:
        conn.execute(
            insert(reactions).values(
                id=event.originator_id,
                user_id=event.user_id,
                target_kind=event.target_kind,
                target_id=event.target_id,
                liked=False,
                disliked=False,
                loved=False,
                updated_at=event.timestamp,
            )
        )

    @on(Reaction.Set)
    def _set(self, conn: Connection, event: Any) -> None:
        values = {_FLAG[event.kind]: True}
        if event.replaced is not None:
            values[_FLAG[event.replaced]] = False
        self._update(conn, event, values)

    @on(Reaction.Cleared)
    def _cleared(self, conn: Connection, event: Any) -> None:
        self._update(conn, event, {_FLAG[event.kind]: False})

    @staticmethod
    def _flags(event: Any) -> dict[str, Any]:
        """The columns a Set or Cleared event assigns (absolute values, never deltas)."""
        if isinstance(event, Reaction.Set):
            values: dict[str, Any] = {_FLAG[event.kind]: True}
            if event.replaced is not None:
                values[_FLAG[event.replaced]] = False
        else:
            values = {_FLAG[event.kind]: False}
        values["updated_at"] = event.at
        return values

    def apply(self, conn: Connection, events: Sequence[Any]) -> None:
        """The batch's last word per row: new rows in one insert, changes in one update per shape.

        Each is one statement for all its rows (:mod:`projections.bulk`).
        Every event assigns absolute values, so for each row the last
        assignment of each column in log order is what one event per
        transaction would have left.
        """
        opened: dict[Any, dict[str, Any]] = {}
        changed: dict[Any, dict[str, Any]] = {}

        def flush() -> None:
            insert_rows(conn, reactions, list(opened.values()))
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row_id, values in changed.items():
                shapes.setdefault(tuple(sorted(values)), []).append({"id": row_id, **values})
            for columns, rows in shapes.items():
                update_rows(conn, reactions, rows, assign=columns)
            opened.clear()
            changed.clear()

        for event in events:
            if isinstance(event, Reaction.Opened):
                opened[event.originator_id] = {
                    "id": event.originator_id,
                    "user_id": event.user_id,
                    "target_kind": event.target_kind,
                    "target_id": event.target_id,
                    "liked": False,
                    "disliked": False,
                    "loved": False,
                    "updated_at": event.timestamp,
                }
            elif isinstance(event, Reaction.Set | Reaction.Cleared):
                row = opened.get(event.originator_id)
                target = row if row is not None else changed.setdefault(event.originator_id, {})
                target.update(self._flags(event))
            else:
                # Any other handler sees the rows as the log left them so far.
                flush()
                self._handlers[get_topic(type(event))](self, conn, event)
        flush()

    @staticmethod
    def _update(conn: Connection, event: Any, values: dict[str, bool]) -> None:
        conn.execute(
            update(reactions)
            .where(reactions.c.id == event.originator_id)
            .values(updated_at=event.at, **values)
        )
