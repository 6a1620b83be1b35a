"""The counts of tracks (likes, dislikes, loves, plays): handlers the tracks projection mixes in.

A table has one writer. The counts columns live on ``tracks``, so the
projection that owns ``tracks`` also applies the reaction and play events to
them; in one projection, log order guarantees a track's row exists before any
count touches it (a separate projection could run ahead of the row's
insertion and lose increments), and rebuilding ``tracks`` recomputes the
counts with it. Every change is a set-based increment (``likes = likes + 1``),
exact under any concurrency; a track deleted in the meantime has no row, so
its late events change nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from domain.plays import Play
from domain.reactions import Reaction
from projections.increments import IncrementBatching, increments_only
from projections.projector import on
from projections.schema import tracks

_COUNT_COLUMN = {"like": "likes", "dislike": "dislikes", "love": "loves"}


def _add(conn: Connection, track_id: Any, column: str, delta: int) -> None:
    # Summed per track over the projector's batch (see projections.increments).
    IncrementBatching.increment(conn, tracks, track_id, column, delta)


class TrackCountsHandlers(IncrementBatching):
    """Mix into the projector that owns ``tracks`` (before ``Projector`` in the bases)."""

    @increments_only
    @on(Reaction.Set)
    def _track_reaction_set(self, conn: Connection, event: Any) -> None:
        if event.target_kind != "track":
            return
        _add(conn, event.target_id, _COUNT_COLUMN[event.kind], 1)
        if event.replaced is not None:
            _add(conn, event.target_id, _COUNT_COLUMN[event.replaced], -1)

    @increments_only
    @on(Reaction.Cleared)
    def _track_reaction_cleared(self, conn: Connection, event: Any) -> None:
        if event.target_kind == "track":
            _add(conn, event.target_id, _COUNT_COLUMN[event.kind], -1)

    @increments_only
    @on(Play.Recorded)
    def _track_played(self, conn: Connection, event: Any) -> None:
        if event.target_kind == "track":
            _add(conn, event.target_id, "plays", 1)
