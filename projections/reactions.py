"""The reactions read model: each user's current reactions to each target (``my_reactions``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from domain.reactions import Reaction
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
    def _update(conn: Connection, event: Any, values: dict[str, bool]) -> None:
        conn.execute(
            update(reactions)
            .where(reactions.c.id == event.originator_id)
            .values(updated_at=event.at, **values)
        )
