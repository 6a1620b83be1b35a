"""Queries on the tracks read model: one track, and keyset-paginated listings
(see :mod:`projections.queries.keyset`).

Each statement is built once per shape (with or without a viewer, how many
search words, which sort...) and its values travel as bound parameters. A
statement object built anew for every request cost more than its building: for
a fresh object SQLAlchemy fetches the cached compiled form by generating a cache
key, then adapts that form's result columns to the new object, and the garbage
left behind wakes the collector. Measured on a 100-entry playlist's tracks:
1.8 against 1.0 ms of CPU per execution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Integer,
    Row,
    RowMapping,
    Select,
    and_,
    bindparam,
    select,
)

from projections.queries.keyset import Page, after, decode_cursor, encode_cursor
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from projections.schema import reactions, tracks
from projections.tracks import fold

TrackSort = Literal["new", "plays", "likes", "loves", "title"]

# sort -> (column, its Python type, descending); ties are broken by id in the same direction.
_SORTS: dict[str, tuple[Column[Any], type, bool]] = {
    "new": (tracks.c.created_at, datetime, True),
    "plays": (tracks.c.plays, int, True),
    "likes": (tracks.c.likes, int, True),
    "loves": (tracks.c.loves, int, True),
    "title": (tracks.c.title_key, str, False),
}
_MAX_TERMS = 8


@dataclass(frozen=True)
class TrackCounts:
    """How many likes, dislikes, loves and plays a track has."""

    likes: int
    dislikes: int
    loves: int
    plays: int


@dataclass(frozen=True)
class TrackRow:
    """A track as the read side knows it."""

    id: UUID
    title: str
    artist: str | None
    album: str | None
    genre: str | None
    year: int | None
    duration_ms: int
    bitrate: int | None
    sample_rate: int | None
    channels: int | None
    mime_type: str
    extension: str
    size_bytes: int
    sha256: str
    uploader_id: UUID
    created_at: datetime
    updated_at: datetime
    counts: TrackCounts
    # The viewer's own reactions, when the query was asked for a viewer.
    mine: MyReactionsRow | None = None


def _select(with_viewer: bool) -> Select[Any]:
    """The tracks, with the viewer's reactions joined in when ``with_viewer``.

    One statement instead of a second lookup in ``reactions``: every query is
    a round trip, and under load each round trip also waits for the GIL.
    """
    if not with_viewer:
        return select(*_COLUMNS)
    return select(*track_columns(with_viewer)).join_from(
        tracks, reactions, viewer_reactions_join(tracks.c.id), isouter=True
    )


# Every column but search_text: the longest, and only ever matched in SQL.
_COLUMNS = tuple(column for column in tracks.c if column.key != "search_text")


def track_columns(with_viewer: bool) -> list[Any]:
    """The columns :func:`track_row` reads; with the viewer's reaction flags when ``with_viewer``.

    Select them from ``tracks`` joined (outer) to :func:`viewer_reactions_join`.
    """
    if not with_viewer:
        return list(_COLUMNS)
    r = reactions.c
    return [*_COLUMNS, r.liked, r.disliked, r.loved]


def viewer_reactions_join(target: Any) -> ColumnElement[bool]:
    """The ON clause joining ``reactions`` to the viewer's reactions to ``target``.

    The viewer is the bound parameter ``viewer_id`` (see :func:`bound`).
    """
    return and_(reactions.c.user_id == bindparam("viewer_id"), reactions.c.target_id == target)


def bound(viewer_id: UUID | None, **values: Any) -> dict[str, Any]:
    """The parameters of a statement built once per shape: ``values``, and the viewer if any."""
    if viewer_id is not None:
        values["viewer_id"] = viewer_id
    return values


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, wildcards in it taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _mine(m: RowMapping) -> MyReactionsRow:
    if m["liked"] is None:
        return NO_REACTIONS
    return MyReactionsRow(bool(m["liked"]), bool(m["disliked"]), bool(m["loved"]))


def track_row(row: Row[Any], with_mine: bool = False) -> TrackRow:
    """A :class:`TrackRow` from a row of :func:`track_columns` (``with_mine``: with a viewer).

    Columns are read through the row's mapping: an attribute of a SQLAlchemy
    row costs five times a key (measured: 12 against 2.6 µs per 25 columns),
    and a page of tracks reads thousands.
    """
    m = row._mapping
    return TrackRow(
        id=m["id"],
        title=m["title"],
        artist=m["artist"],
        album=m["album"],
        genre=m["genre"],
        year=m["year"],
        duration_ms=int(m["duration_ms"]),
        bitrate=m["bitrate"],
        sample_rate=m["sample_rate"],
        channels=m["channels"],
        mime_type=m["mime_type"],
        extension=m["extension"],
        size_bytes=int(m["size_bytes"]),
        sha256=m["sha256"],
        uploader_id=m["uploader_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        counts=TrackCounts(int(m["likes"]), int(m["dislikes"]), int(m["loves"]), int(m["plays"])),
        mine=_mine(m) if with_mine else None,
    )


def search_terms(q: str | None) -> list[str]:
    """The words of a search, case-folded; a track must contain every one."""
    if not q:
        return []
    return [fold(word) for word in q.split()][:_MAX_TERMS]


@cache
def _by_id(with_viewer: bool) -> Select[Any]:
    """Track ``track_id`` (with ``viewer_id``'s reactions when ``with_viewer``)."""
    return _select(with_viewer).where(tracks.c.id == bindparam("track_id"))


@cache
def _by_ids(with_viewer: bool) -> Select[Any]:
    """The tracks among ``track_ids`` (with ``viewer_id``'s reactions when ``with_viewer``)."""
    return _select(with_viewer).where(tracks.c.id.in_(bindparam("track_ids", expanding=True)))


@cache
def _listing(
    terms: int, sort: TrackSort, by_uploader: bool, after_cursor: bool, with_viewer: bool
) -> Select[Any]:
    """Tracks matching ``term_0``..., by ``uploader_id``, after a cursor, ``limit`` of them."""
    column, _, descending = _SORTS[sort]
    conditions: list[ColumnElement[bool]] = [
        tracks.c.search_text.like(bindparam(f"term_{index}"), escape="\\") for index in range(terms)
    ]
    if by_uploader:
        conditions.append(tracks.c.uploader_id == bindparam("uploader_id"))
    if after_cursor:
        conditions.append(
            after(
                column,
                tracks.c.id,
                bindparam("after_value"),
                bindparam("after_id"),
                desc=descending,
            )
        )
    order: Sequence[ColumnElement[Any]] = (
        (column.desc(), tracks.c.id.desc()) if descending else (column, tracks.c.id)
    )
    limit = bindparam("limit", type_=Integer)
    return _select(with_viewer).where(*conditions).order_by(*order).limit(limit)


class TrackQueries:
    """Reads ``tracks``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, track_id: UUID, viewer_id: UUID | None = None) -> TrackRow | None:
        """The live track, or None; with the viewer's reactions when given a viewer."""
        with_viewer = viewer_id is not None
        with self._engine.connect() as conn:
            row = conn.execute(_by_id(with_viewer), bound(viewer_id, track_id=track_id)).first()
        return None if row is None else track_row(row, with_viewer)

    def by_ids(
        self, track_ids: Iterable[UUID], viewer_id: UUID | None = None
    ) -> dict[UUID, TrackRow]:
        """The live tracks among these ids; with the viewer's reactions when given a viewer."""
        wanted = list(dict.fromkeys(track_ids))
        if not wanted:
            return {}
        with_viewer = viewer_id is not None
        with self._engine.connect() as conn:
            rows = conn.execute(_by_ids(with_viewer), bound(viewer_id, track_ids=wanted)).all()
        return {row.id: track_row(row, with_viewer) for row in rows}

    def list(
        self,
        *,
        q: str | None = None,
        uploader: UUID | None = None,
        sort: TrackSort = "new",
        cursor: str | None = None,
        limit: int = 20,
        viewer_id: UUID | None = None,
    ) -> Page[TrackRow]:
        """A page of tracks matching every word of ``q`` (in title, artist or album).

        With a viewer, each track carries the viewer's reactions (``mine``).
        """
        column, value_type, _ = _SORTS[sort]
        terms = search_terms(q)
        values: dict[str, Any] = {f"term_{i}": like_pattern(t) for i, t in enumerate(terms)}
        if uploader is not None:
            values["uploader_id"] = uploader
        values["limit"] = limit + 1
        if cursor:
            values["after_value"], values["after_id"] = decode_cursor(cursor, value_type)
        with_viewer = viewer_id is not None
        statement = _listing(len(terms), sort, uploader is not None, bool(cursor), with_viewer)
        with self._engine.connect() as conn:
            rows = conn.execute(statement, bound(viewer_id, **values)).all()
        items = [track_row(row, with_viewer) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last._mapping[column.key], last.id)
        return Page(items, next_cursor)
