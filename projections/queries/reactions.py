"""Queries on the reactions read model: the caller's own reactions (``my_reactions``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Engine, select

from projections.schema import reactions


@dataclass(frozen=True)
class MyReactionsRow:
    """One user's reactions to one target."""

    like: bool = False
    dislike: bool = False
    love: bool = False


NO_REACTIONS = MyReactionsRow()


class ReactionQueries:
    """Reads ``reactions``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def mine(self, user_id: UUID, target_ids: Iterable[UUID]) -> dict[UUID, MyReactionsRow]:
        """The user's reactions to each of the targets (targets never reacted to are absent)."""
        wanted = list(set(target_ids))
        if not wanted:
            return {}
        r = reactions.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(r.target_id, r.liked, r.disliked, r.loved).where(
                    r.user_id == user_id, r.target_id.in_(wanted)
                )
            ).all()
        return {
            row.target_id: MyReactionsRow(bool(row.liked), bool(row.disliked), bool(row.loved))
            for row in rows
        }
