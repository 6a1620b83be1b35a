"""Queries on the playlists read model (and the owners' names from ``users``).

Visibility is decided here, in SQL, for every list and lookup: a private or
deleted playlist is only ever returned to its owner (deleted ones to no one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import ColumnElement, Engine, Row, RowMapping, Select, and_, or_, select

from projections.queries.keyset import Page, after, decode_cursor, encode_cursor
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from projections.queries.tracks import TrackRow, track_columns, track_row, viewer_reactions_join
from projections.schema import playlist_entries, playlists, reactions, tracks, users

PlaylistSort = Literal["new", "plays", "likes", "loves", "name"]

# Sort key -> (column, value type in cursors, descending).
_SORTS: dict[str, tuple[str, type, bool]] = {
    "new": ("created_at", datetime, True),
    "plays": ("plays", int, True),
    "likes": ("likes", int, True),
    "loves": ("loves", int, True),
    "name": ("name_key", str, False),
}


@dataclass(frozen=True)
class Counts:
    """How many likes, dislikes, loves and plays something has."""

    likes: int
    dislikes: int
    loves: int
    plays: int


@dataclass(frozen=True)
class PlaylistRow:
    """A playlist as listed (without its entries)."""

    id: UUID
    owner_id: UUID
    owner_username: str | None
    name: str
    description: str
    visibility: str
    version: int
    entry_count: int
    counts: Counts
    created_at: datetime
    updated_at: datetime
    # The viewer's own reactions, when the query was asked for a viewer.
    mine: MyReactionsRow | None = None


@dataclass(frozen=True)
class EntryRow:
    """One entry of a playlist, in order; ``unavailable`` once its track was deleted."""

    entry_id: UUID
    position: int
    track_id: UUID
    unavailable: bool
    added_at: datetime


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, wildcards in it taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def visible_to(viewer_id: UUID | None) -> ColumnElement[bool]:
    """Live playlists the viewer may see: public ones, and their own."""
    c = playlists.c
    shown = c.visibility == "public"
    if viewer_id is not None:
        shown = or_(shown, c.owner_id == viewer_id)
    return and_(c.deleted.is_(False), shown)


_OWNED = select(playlists, users.c.username.label("owner_username")).join_from(
    playlists, users, users.c.id == playlists.c.owner_id, isouter=True
)


def _select(viewer_id: UUID | None = None) -> Select[Any]:
    """Playlists with their owner's name, and the viewer's reactions when there is a viewer."""
    if viewer_id is None:
        return _OWNED
    r = reactions.c
    return _OWNED.add_columns(r.liked, r.disliked, r.loved).join_from(
        playlists,
        reactions,
        and_(r.user_id == viewer_id, r.target_id == playlists.c.id),
        isouter=True,
    )


def _mine(m: RowMapping) -> MyReactionsRow | None:
    if "liked" not in m:
        return None
    if m["liked"] is None:
        return NO_REACTIONS
    return MyReactionsRow(bool(m["liked"]), bool(m["disliked"]), bool(m["loved"]))


def _row(r: Row[Any]) -> PlaylistRow:
    # By key, not attribute: see projections.queries.tracks.track_row.
    m = r._mapping
    return PlaylistRow(
        id=m["id"],
        owner_id=m["owner_id"],
        owner_username=m["owner_username"],
        name=m["name"],
        description=m["description"],
        visibility=m["visibility"],
        version=int(m["version"]),
        entry_count=int(m["entry_count"]),
        counts=Counts(int(m["likes"]), int(m["dislikes"]), int(m["loves"]), int(m["plays"])),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        mine=_mine(m),
    )


def _entry(columns: Sequence[Any]) -> EntryRow:
    """An entry from its five columns, in the order :class:`EntryRow` lists them."""
    entry_id, position, track_id, unavailable, added_at = columns
    return EntryRow(entry_id, int(position), track_id, bool(unavailable), added_at)


class PlaylistQueries:
    """Reads ``playlists`` and ``playlist_entries``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def visible(self, playlist_id: UUID, viewer_id: UUID | None) -> PlaylistRow | None:
        """The playlist if the viewer may see it, else None (hidden and missing look alike).

        With a viewer, it carries the viewer's reactions (``mine``).
        """
        with self._engine.connect() as conn:
            row = conn.execute(
                _select(viewer_id).where(playlists.c.id == playlist_id, visible_to(viewer_id))
            ).first()
        return None if row is None else _row(row)

    def visible_many(
        self, playlist_ids: Iterable[UUID], viewer_id: UUID | None
    ) -> dict[UUID, PlaylistRow]:
        """Those of the playlists the viewer may see, by id, with the viewer's reactions."""
        wanted = list(set(playlist_ids))
        if not wanted:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                _select(viewer_id).where(playlists.c.id.in_(wanted), visible_to(viewer_id))
            ).all()
        return {r.id: _row(r) for r in rows}

    def entries(self, playlist_id: UUID) -> list[EntryRow]:
        """The playlist's entries in order."""
        e = playlist_entries.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(e.entry_id, e.position, e.track_id, e.unavailable, e.added_at)
                .where(e.playlist_id == playlist_id)
                .order_by(e.position)
            ).all()
        return [_entry(r) for r in rows]

    def entries_with_tracks(
        self, playlist_id: UUID, viewer_id: UUID | None
    ) -> list[tuple[EntryRow, TrackRow | None]]:
        """The playlist's entries in order, each with its live track (None once deleted).

        One statement: the entries joined to their tracks (and to the viewer's
        reactions to them), rather than a second lookup by a list of ids that
        would be a new statement text, and a new parse, for every length.
        """
        e = playlist_entries.c
        entry_columns = [
            e.entry_id.label("entry_id_"),
            e.position.label("position_"),
            e.track_id.label("track_id_"),
            e.unavailable.label("unavailable_"),
            e.added_at.label("added_at_"),
        ]
        joined = playlist_entries.join(tracks, tracks.c.id == e.track_id, isouter=True)
        if viewer_id is not None:
            joined = joined.join(
                reactions, viewer_reactions_join(viewer_id, tracks.c.id), isouter=True
            )
        statement = (
            select(*entry_columns, *track_columns(viewer_id))
            .select_from(joined)
            .where(e.playlist_id == playlist_id)
            .order_by(e.position)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
        with_mine = viewer_id is not None
        return [
            (_entry(r[:5]), None if r._mapping["id"] is None else track_row(r, with_mine))
            for r in rows
        ]

    def listed(
        self,
        *,
        q: str | None = None,
        owner_id: UUID | None = None,
        sort: PlaylistSort = "new",
        cursor: str | None = None,
        limit: int = 20,
    ) -> Page[PlaylistRow]:
        """Public playlists, searched by name or description, filtered by owner, sorted."""
        conditions = [visible_to(None)]
        if owner_id is not None:
            conditions.append(playlists.c.owner_id == owner_id)
        return self._page(conditions, q, sort, cursor, limit)

    def owned_by(
        self,
        owner_id: UUID,
        *,
        q: str | None = None,
        sort: PlaylistSort = "new",
        cursor: str | None = None,
        limit: int = 20,
    ) -> Page[PlaylistRow]:
        """The owner's own playlists, private ones included."""
        conditions = [playlists.c.owner_id == owner_id, playlists.c.deleted.is_(False)]
        return self._page(conditions, q, sort, cursor, limit)

    def _page(
        self,
        conditions: list[ColumnElement[bool]],
        q: str | None,
        sort: PlaylistSort,
        cursor: str | None,
        limit: int,
    ) -> Page[PlaylistRow]:
        column_name, value_type, desc = _SORTS[sort]
        column = playlists.c[column_name]
        if q is not None and q.strip():
            pattern = like_pattern(q.strip().casefold())
            conditions.append(
                or_(
                    playlists.c.name_key.like(pattern, escape="\\"),
                    playlists.c.description_key.like(pattern, escape="\\"),
                )
            )
        if cursor is not None:
            value, row_id = decode_cursor(cursor, value_type)
            conditions.append(after(column, playlists.c.id, value, row_id, desc=desc))
        order = [column.desc(), playlists.c.id.desc()] if desc else [column, playlists.c.id]
        with self._engine.connect() as conn:
            rows = conn.execute(
                _select().where(*conditions).order_by(*order).limit(limit + 1)
            ).all()
        items = [_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last._mapping[column_name], last.id)
        return Page(items, next_cursor)
