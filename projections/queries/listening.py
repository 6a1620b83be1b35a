"""Queries on the listening read model: history, top lists over rolling windows, buckets.

Windows are exact to the microsecond and still cheap: the whole hours inside a
window come from ``stats_hourly`` (one row per target and hour), and only the
two partial hours at its edges are counted from the raw ``plays`` /
``reaction_changes`` rows. The history and top lists are statements built once
per shape, as in :mod:`projections.queries.tracks` (which says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal,
    select,
    union_all,
)

from domain.errors import InvalidValue
from projections.listening import hour_of
from projections.queries.keyset import Page, after, decode_cursor, encode_cursor
from projections.schema import plays, reaction_changes, stats_hourly

Period = Literal["day", "week", "month", "year", "all"]
RankBy = Literal["plays", "likes", "loves"]
Bucket = Literal["hour", "day", "month"]

PERIODS: dict[str, timedelta] = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
_HOUR = timedelta(hours=1)
_REACTION_KIND = {"likes": "like", "loves": "love"}


@dataclass(frozen=True)
class PlayRow:
    """One play in a user's history."""

    id: UUID
    played_at: datetime
    target_kind: str
    target_id: UUID
    playlist_id: UUID | None
    source: str


@dataclass(frozen=True)
class Ranked:
    """A target and its count over a window."""

    target_id: UUID
    count: int


# What a top list is asked for: target kind, what it ranks by, period, length.
RankingKey = tuple[str, str, str, int]


@dataclass(frozen=True)
class BucketCount:
    """Plays in the bucket starting at ``start``."""

    start: datetime
    count: int


def _ceil_hour(moment: datetime) -> datetime:
    floor = hour_of(moment)
    return floor if floor == moment else floor + _HOUR


def truncate(moment: datetime, bucket: Bucket) -> datetime:
    """The start of the UTC bucket ``moment`` falls in."""
    moment = hour_of(moment)
    if bucket == "day":
        return moment.replace(hour=0)
    if bucket == "month":
        return moment.replace(day=1, hour=0)
    return moment


def next_bucket(start: datetime, bucket: Bucket) -> datetime:
    """The start of the bucket after the one starting at ``start``."""
    if bucket == "hour":
        return start + _HOUR
    if bucket == "day":
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def _raw_counts(target_kind: str, by: RankBy, start: Any, end: Any | None) -> Select[Any]:
    """Per target, the raw facts of one kind in ``[start, end)`` (moments or bound parameters)."""
    if by == "plays":
        p = plays.c
        conditions = [p.target_kind == target_kind, p.played_at >= start]
        if end is not None:
            conditions.append(p.played_at < end)
        return (
            select(p.target_id.label("target_id"), func.count().label("n"))
            .where(*conditions)
            .group_by(p.target_id)
        )
    r = reaction_changes.c
    conditions = [r.target_kind == target_kind, r.kind == _REACTION_KIND[by], r.at >= start]
    if end is not None:
        conditions.append(r.at < end)
    return (
        select(r.target_id.label("target_id"), func.sum(r.delta).label("n"))
        .where(*conditions)
        .group_by(r.target_id)
    )


def _hourly_counts(target_kind: str, by: RankBy, start: Any, end: Any) -> Select[Any]:
    """Per target, the sums of the whole hours in ``[start, end)`` (moments or bound parameters)."""
    h = stats_hourly.c
    return (
        select(h.target_id.label("target_id"), func.sum(h[by]).label("n"))
        .where(h.target_kind == target_kind, h.hour >= start, h.hour < end)
        .group_by(h.target_id)
    )


@cache
def _history(after_cursor: bool) -> Select[Any]:
    """The plays of ``user_id``, newest first, after a cursor, ``limit`` of them."""
    p = plays.c
    conditions: list[ColumnElement[bool]] = [p.user_id == bindparam("user_id")]
    if after_cursor:
        conditions.append(
            after(p.played_at, p.id, bindparam("after_value"), bindparam("after_id"), desc=True)
        )
    return (
        select(p.id, p.played_at, p.target_kind, p.target_id, p.playlist_id, p.source)
        .where(*conditions)
        .order_by(p.played_at.desc(), p.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )


# Bounded, unlike the other shapes' caches: it also keys on ``eligible``, a
# statement (by identity), which a caller could build anew for every call.
@lru_cache(maxsize=32)
def _top(target_kind: str, by: RankBy, whole_hours: bool, eligible: Select[Any]) -> Select[Any]:
    """The ``limit`` best ``eligible`` targets since ``start``.

    Raw facts from ``start`` to ``first_hour``, then with ``whole_hours`` the
    hourly sums up to ``current_hour``, then raw facts from ``last_edge`` on.
    """
    parts = [_raw_counts(target_kind, by, bindparam("start"), bindparam("first_hour"))]
    if whole_hours:
        parts.append(
            _hourly_counts(target_kind, by, bindparam("first_hour"), bindparam("current_hour"))
        )
    parts.append(_raw_counts(target_kind, by, bindparam("last_edge"), None))
    counted = union_all(*parts).subquery()
    total = func.sum(counted.c.n).label("total")
    return (
        select(counted.c.target_id, total)
        .where(counted.c.target_id.in_(eligible))
        .group_by(counted.c.target_id)
        .having(func.sum(counted.c.n) > literal(0))
        .order_by(total.desc(), counted.c.target_id)
        .limit(bindparam("limit", type_=Integer))
    )


class ListeningQueries:
    """Reads ``plays``, ``reaction_changes`` and ``stats_hourly``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def history(self, user_id: UUID, *, cursor: str | None, limit: int) -> Page[PlayRow]:
        """The user's plays, newest first."""
        values: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
        if cursor is not None:
            values["after_value"], values["after_id"] = decode_cursor(cursor, datetime)
        with self._engine.connect() as conn:
            rows = conn.execute(_history(cursor is not None), values).all()
        items = [
            PlayRow(play_id, played_at, target_kind, target_id, playlist_id, source)
            for play_id, played_at, target_kind, target_id, playlist_id, source in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(items[-1].played_at, items[-1].id)
        return Page(items, next_cursor)

    def top(
        self,
        target_kind: str,
        by: RankBy,
        start: datetime,
        now: datetime,
        limit: int,
        eligible: Select[Any],
    ) -> list[Ranked]:
        """The targets with the highest counts since ``start``, among the ``eligible`` ids.

        Reaction counts are net: reactions set in the window minus those taken
        back in it. Targets whose count is not positive are left out.
        """
        first_hour, current_hour = _ceil_hour(start), hour_of(now)
        statement = _top(target_kind, by, first_hour < current_hour, eligible)
        values = {
            "start": start,
            "first_hour": first_hour,
            "current_hour": current_hour,
            "last_edge": max(current_hour, start),
            "limit": limit,
        }
        with self._engine.connect() as conn:
            rows = conn.execute(statement, values).all()
        return [Ranked(r.target_id, int(r.total)) for r in rows]

    def plays_per_bucket(
        self,
        target_kind: str,
        target_id: UUID,
        bucket: Bucket,
        start: datetime,
        end: datetime,
        max_buckets: int,
    ) -> list[BucketCount]:
        """Plays of one target per UTC bucket between ``start`` and ``end``, zeros included.

        The first bucket is the one ``start`` falls in; only plays in
        ``[start, end)`` are counted.
        """
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            raise InvalidValue("to", "must be after from")
        starts: list[datetime] = []
        cursor = truncate(start, bucket)
        while cursor < end:
            starts.append(cursor)
            if len(starts) > max_buckets:
                raise InvalidValue(
                    "bucket", f"the range holds more than {max_buckets} buckets; narrow it"
                )
            cursor = next_bucket(cursor, bucket)
        counts = dict.fromkeys(starts, 0)
        for moment, n in self._hours_and_plays(target_kind, target_id, start, end):
            counts[truncate(moment, bucket)] += n
        return [BucketCount(s, counts[s]) for s in starts]

    def _hours_and_plays(
        self, target_kind: str, target_id: UUID, start: datetime, end: datetime
    ) -> list[tuple[datetime, int]]:
        """(moment, plays) pairs covering ``[start, end)`` exactly: hourly sums plus raw edges."""
        first_hour, last_hour = _ceil_hour(start), hour_of(end)
        p, h = plays.c, stats_hourly.c
        edges: list[tuple[datetime, datetime]] = []
        result: list[tuple[datetime, int]] = []
        with self._engine.connect() as conn:
            if first_hour < last_hour:
                edges = [(start, first_hour), (last_hour, end)]
                hourly = conn.execute(
                    select(h.hour, h.plays).where(
                        h.target_kind == target_kind,
                        h.target_id == target_id,
                        h.hour >= first_hour,
                        h.hour < last_hour,
                        h.plays != 0,
                    )
                ).all()
                result.extend((r.hour, int(r.plays)) for r in hourly)
            else:
                edges = [(start, end)]
            for low, high in edges:
                if low >= high:
                    continue
                raw = conn.execute(
                    select(p.played_at).where(
                        and_(
                            p.target_kind == target_kind,
                            p.target_id == target_id,
                            p.played_at >= low,
                            p.played_at < high,
                        )
                    )
                ).all()
                result.extend((r.played_at, 1) for r in raw)
        return result
