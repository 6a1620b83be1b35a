"""Queries on the playlists read model (and the owners' names from ``users``).

Visibility is decided here, in SQL, for every list and lookup: a private or
deleted playlist is only ever returned to its owner (deleted ones to no one).
Statements are built once per shape, as in :mod:`projections.queries.tracks`
(which says why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Engine,
    Integer,
    Row,
    RowMapping,
    Select,
    String,
    and_,
    bindparam,
    or_,
    select,
)

from projections.queries.keyset import Page, after, decode_cursor, encode_cursor
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from projections.queries.tracks import (
    TrackRow,
    bound,
    like_pattern,
    track_columns,
    track_row,
    viewer_reactions_join,
)
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


def visible_to(with_viewer: bool = False) -> ColumnElement[bool]:
    """Live playlists the viewer may see: public ones, and with a viewer their own.

    The viewer is the bound parameter ``viewer_id`` (see :func:`bound`).
    """
    c = playlists.c
    shown = c.visibility == "public"
    if with_viewer:
        shown = or_(shown, c.owner_id == bindparam("viewer_id"))
    return and_(c.deleted.is_(False), shown)


_OWNED = select(playlists, users.c.username.label("owner_username")).join_from(
    playlists, users, users.c.id == playlists.c.owner_id, isouter=True
)


def _select(with_viewer: bool) -> Select[Any]:
    """Playlists with their owner's name, and the viewer's reactions when ``with_viewer``."""
    if not with_viewer:
        return _OWNED
    r = reactions.c
    return _OWNED.add_columns(r.liked, r.disliked, r.loved).join_from(
        playlists, reactions, viewer_reactions_join(playlists.c.id), isouter=True
    )


@cache
def _visible(with_viewer: bool) -> Select[Any]:
    """Playlist ``playlist_id`` if visible (to ``viewer_id`` when ``with_viewer``)."""
    return _select(with_viewer).where(
        playlists.c.id == bindparam("playlist_id"), visible_to(with_viewer)
    )


@cache
def _visible_many(with_viewer: bool) -> Select[Any]:
    """The visible ones among ``playlist_ids`` (to ``viewer_id`` when ``with_viewer``)."""
    return _select(with_viewer).where(
        playlists.c.id.in_(bindparam("playlist_ids", expanding=True)), visible_to(with_viewer)
    )


_ENTRIES = (
    select(
        playlist_entries.c.entry_id,
        playlist_entries.c.position,
        playlist_entries.c.track_id,
        playlist_entries.c.unavailable,
        playlist_entries.c.added_at,
    )
    .where(playlist_entries.c.playlist_id == bindparam("playlist_id"))
    .order_by(playlist_entries.c.position)
)


@cache
def _entries_with_tracks(with_viewer: bool) -> Select[Any]:
    """The entries of ``playlist_id`` joined to their tracks (and ``viewer_id``'s reactions)."""
    e = playlist_entries.c
    entry_columns = [
        e.entry_id.label("entry_id_"),
        e.position.label("position_"),
        e.track_id.label("track_id_"),
        e.unavailable.label("unavailable_"),
        e.added_at.label("added_at_"),
    ]
    joined = playlist_entries.join(tracks, tracks.c.id == e.track_id, isouter=True)
    if with_viewer:
        joined = joined.join(reactions, viewer_reactions_join(tracks.c.id), isouter=True)
    return (
        select(*entry_columns, *track_columns(with_viewer))
        .select_from(joined)
        .where(e.playlist_id == bindparam("playlist_id"))
        .order_by(e.position)
    )


# Which playlists a page lists: the public ones, the public ones of one owner,
# or all of the caller's own (private ones included).
_Scope = Literal["public", "public_of_owner", "owned"]


@cache
def _page(scope: _Scope, searched: bool, sort: PlaylistSort, after_cursor: bool) -> Select[Any]:
    """A page of ``scope`` (``owner_id``), matching ``pattern``, after a cursor, ``limit`` long."""
    c = playlists.c
    column_name, _, desc = _SORTS[sort]
    column = c[column_name]
    conditions: list[ColumnElement[bool]] = []
    if scope == "owned":
        conditions += [c.owner_id == bindparam("owner_id"), c.deleted.is_(False)]
    else:
        conditions.append(visible_to())
        if scope == "public_of_owner":
            conditions.append(c.owner_id == bindparam("owner_id"))
    if searched:
        pattern = bindparam("pattern", type_=String)
        conditions.append(
            or_(c.name_key.like(pattern, escape="\\"), c.description_key.like(pattern, escape="\\"))
        )
    if after_cursor:
        conditions.append(
            after(column, c.id, bindparam("after_value"), bindparam("after_id"), desc=desc)
        )
    order = [column.desc(), c.id.desc()] if desc else [column, c.id]
    limit = bindparam("limit", type_=Integer)
    return _OWNED.where(*conditions).order_by(*order).limit(limit)


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
        statement = _visible(viewer_id is not None)
        with self._engine.connect() as conn:
            row = conn.execute(statement, bound(viewer_id, playlist_id=playlist_id)).first()
        return None if row is None else _row(row)

    def visible_many(
        self, playlist_ids: Iterable[UUID], viewer_id: UUID | None
    ) -> dict[UUID, PlaylistRow]:
        """Those of the playlists the viewer may see, by id, with the viewer's reactions."""
        wanted = list(set(playlist_ids))
        if not wanted:
            return {}
        statement = _visible_many(viewer_id is not None)
        with self._engine.connect() as conn:
            rows = conn.execute(statement, bound(viewer_id, playlist_ids=wanted)).all()
        return {r.id: _row(r) for r in rows}

    def entries(self, playlist_id: UUID) -> list[EntryRow]:
        """The playlist's entries in order."""
        with self._engine.connect() as conn:
            rows = conn.execute(_ENTRIES, {"playlist_id": playlist_id}).all()
        return [_entry(r) for r in rows]

    def entries_with_tracks(
        self, playlist_id: UUID, viewer_id: UUID | None
    ) -> list[tuple[EntryRow, TrackRow | None]]:
        """The playlist's entries in order, each with its live track (None once deleted).

        One statement: the entries joined to their tracks (and to the viewer's
        reactions to them), rather than a second lookup by a list of ids that
        would be a new statement text, and a new parse, for every length.
        """
        with_viewer = viewer_id is not None
        statement = _entries_with_tracks(with_viewer)
        with self._engine.connect() as conn:
            rows = conn.execute(statement, bound(viewer_id, playlist_id=playlist_id)).all()
        return [
            (_entry(r[:5]), None if r._mapping["id"] is None else track_row(r, with_viewer))
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
        scope: _Scope = "public" if owner_id is None else "public_of_owner"
        return self._page(scope, owner_id, q, sort, cursor, limit)

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
        return self._page("owned", owner_id, q, sort, cursor, limit)

    def _page(
        self,
        scope: _Scope,
        owner_id: UUID | None,
        q: str | None,
        sort: PlaylistSort,
        cursor: str | None,
        limit: int,
    ) -> Page[PlaylistRow]:
        column_name, value_type, _ = _SORTS[sort]
        values: dict[str, Any] = {"limit": limit + 1}
        if owner_id is not None:
            values["owner_id"] = owner_id
        searched = q is not None and bool(q.strip())
        if q is not None and searched:
            values["pattern"] = like_pattern(q.strip().casefold())
        if cursor is not None:
            values["after_value"], values["after_id"] = decode_cursor(cursor, value_type)
        statement = _page(scope, searched, sort, cursor is not None)
        with self._engine.connect() as conn:
            rows = conn.execute(statement, values).all()
        items = [_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last._mapping[column_name], last.id)
        return Page(items, next_cursor)
