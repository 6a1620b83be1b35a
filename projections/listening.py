"""The listening read model: every play, every reaction change, and hourly sums of both.

``plays`` and ``reaction_changes`` keep one row per fact (for the listening
history and for exact edges of time windows); ``stats_hourly`` adds them up
per target and UTC hour (for windows and buckets over long spans). A batch of
events is first summed in memory per (target, hour) and then written with one
upsert that *adds* to the stored sums (``plays = plays + excluded.plays``):
set-based and exact, however many events hit the same hot track. Each table
gets one statement per batch (:mod:`projections.bulk`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic
from sqlalchemy import Connection

from domain.plays import Play
from domain.reactions import Reaction
from projections.bulk import insert_rows
from projections.projector import Projector
from projections.schema import plays, reaction_changes, stats_hourly

COUNT_COLUMNS = ("plays", "likes", "dislikes", "loves")
_REACTION_COLUMN = {"like": "likes", "dislike": "dislikes", "love": "loves"}
_TOPICS = frozenset(get_topic(c) for c in (Play.Recorded, Reaction.Set, Reaction.Cleared))


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class _BatchWrites:
    """What one batch of events adds up to, written in a few statements."""

    def __init__(self) -> None:
        self.plays: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.hourly: defaultdict[tuple[str, UUID, datetime], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(COUNT_COLUMNS, 0)
        )

    def play(self, event: Any) -> None:
        self.plays.append(
            {
                "id": event.originator_id,
                "user_id": event.user_id,
                "target_kind": event.target_kind,
                "target_id": event.target_id,
                "played_at": event.played_at,
                "source": event.source,
                "playlist_id": event.playlist_id,
                "session_id": event.session_id,
            }
        )
        self.hourly[(event.target_kind, event.target_id, hour_of(event.played_at))]["plays"] += 1

    def reaction(self, event: Any, kind: str, delta: int) -> None:
        self.changes.append(
            {
                "reaction_id": event.originator_id,
                "version": event.originator_version,
                "kind": kind,
                "user_id": event.user_id,
                "target_kind": event.target_kind,
                "target_id": event.target_id,
                "delta": delta,
                "at": event.at,
            }
        )
        key = (event.target_kind, event.target_id, hour_of(event.at))
        self.hourly[key][_REACTION_COLUMN[kind]] += delta

    def flush(self, conn: Connection) -> None:
        insert_rows(conn, plays, self.plays)
        insert_rows(conn, reaction_changes, self.changes)
        rows = [
            {"target_kind": kind, "target_id": target, "hour": hour, **sums}
            for (kind, target, hour), sums in self.hourly.items()
        ]
        insert_rows(conn, stats_hourly, rows, add_on_conflict=COUNT_COLUMNS)


class ListeningProjector(Projector):
    """Keeps ``plays``, ``reaction_changes`` and ``stats_hourly`` in step with the log."""

    name = "listening"
    version = 1
    tables = (plays, reaction_changes, stats_hourly)

    def handles(self, topic: str) -> bool:
        """Plays and reaction changes."""
        return topic in _TOPICS

    def apply(self, conn: Connection, events: Sequence[DomainEventProtocol[Any]]) -> None:
        """Sum the batch per target and hour, then write it in a few statements."""
        writes = _BatchWrites()
        for domain_event in events:
            if isinstance(domain_event, Play.Recorded):
                writes.play(domain_event)
            elif isinstance(domain_event, Reaction.Set):
                writes.reaction(domain_event, domain_event.kind, 1)
                if domain_event.replaced is not None:
                    writes.reaction(domain_event, domain_event.replaced, -1)
            elif isinstance(domain_event, Reaction.Cleared):
                writes.reaction(domain_event, domain_event.kind, -1)
        writes.flush(conn)
