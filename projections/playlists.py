"""The playlists read model: playlists with their counts, and their ordered entries.

One projection owns both tables and consumes every event they depend on —
the playlists' own, reactions to and plays of playlists, and track
deletions — so log order guarantees a playlist's row exists before any count
touches it. Positions are kept with set-based shifts (``position = position +
1`` for the entries after an insertion point), never by rewriting a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, update

from domain.playlists import Playlist
from domain.plays import Play
from domain.reactions import Reaction
from domain.tracks import Track
from projections.bulk import insert_rows
from projections.increments import IncrementBatching, increments_only
from projections.projector import Projector, on
from projections.schema import playlist_entries, playlists

_COUNT_COLUMN = {"like": "likes", "dislike": "dislikes", "love": "loves"}


class PlaylistsProjector(IncrementBatching, Projector):
    """Keeps ``playlists`` and ``playlist_entries`` in step with the log."""

    name = "playlists"
    version = 1
    tables = (playlists, playlist_entries)

    def apply(self, conn: Connection, events: Sequence[Any]) -> None:
        """Apply a batch; entries added one after the other to a playlist go in together.

        A run of entries added at consecutive positions p, p+1... of one
        playlist (a playlist filled in one go) leaves exactly what adding them
        one by one does: the entries at p or after move down by the run's
        length, once, and the new ones are inserted with one statement.
        """
        segment: list[Any] = []
        run: list[Any] = []
        for event in events:
            if isinstance(event, Playlist.EntryAdded):
                extends = bool(run) and (
                    run[-1].originator_id == event.originator_id
                    and event.position == run[-1].position + 1
                )
                if run and not extends:
                    self._add_entries(conn, run)
                    run = []
                if segment:
                    IncrementBatching.apply(self, conn, segment)
                    segment = []
                run.append(event)
            else:
                if run:
                    self._add_entries(conn, run)
                    run = []
                segment.append(event)
        if run:
            self._add_entries(conn, run)
        if segment:
            IncrementBatching.apply(self, conn, segment)

    def _add_entries(self, conn: Connection, run: Sequence[Any]) -> None:
        first, last = run[0], run[-1]
        entries = playlist_entries.c
        conn.execute(
            update(playlist_entries)
            .where(entries.playlist_id == first.originator_id, entries.position >= first.position)
            .values(position=entries.position + len(run))
        )
        insert_rows(
            conn,
            playlist_entries,
            [
                {
                    "entry_id": event.entry_id,
                    "playlist_id": event.originator_id,
                    "position": event.position,
                    "track_id": event.track_id,
                    "unavailable": False,
                    "added_at": event.timestamp,
                }
                for event in run
            ],
        )
        self._touch(conn, last, entry_count=playlists.c.entry_count + len(run))

    @on(Playlist.Created)
    def _created(self, conn: Connection, event: Any) -> None:
        conn.execute(
            insert(playlists).values(
                id=event.originator_id,
                owner_id=event.owner_id,
                name=event.name,
                description=event.description,
                name_key=event.name.casefold(),
                description_key=event.description.casefold(),
                visibility=event.visibility,
                version=event.originator_version,
                entry_count=0,
                likes=0,
                dislikes=0,
                loves=0,
                plays=0,
                deleted=False,
                created_at=event.timestamp,
                updated_at=event.timestamp,
            )
        )

    @staticmethod
    def _touch(conn: Connection, event: Any, **values: Any) -> None:
        conn.execute(
            update(playlists)
            .where(playlists.c.id == event.originator_id)
            .values(version=event.originator_version, updated_at=event.timestamp, **values)
        )

    @on(Playlist.Renamed)
    def _renamed(self, conn: Connection, event: Any) -> None:
        self._touch(conn, event, name=event.name, name_key=event.name.casefold())

    @on(Playlist.Described)
    def _described(self, conn: Connection, event: Any) -> None:
        self._touch(
            conn,
            event,
            description=event.description,
            description_key=event.description.casefold(),
        )

    @on(Playlist.VisibilityChanged)
    def _visibility_changed(self, conn: Connection, event: Any) -> None:
        self._touch(conn, event, visibility=event.visibility)

    @on(Playlist.EntryAdded)
    def _entry_added(self, conn: Connection, event: Any) -> None:
        entries = playlist_entries.c
        conn.execute(
            update(playlist_entries)
            .where(entries.playlist_id == event.originator_id, entries.position >= event.position)
            .values(position=entries.position + 1)
        )
        conn.execute(
            insert(playlist_entries).values(
                entry_id=event.entry_id,
                playlist_id=event.originator_id,
                position=event.position,
                track_id=event.track_id,
                unavailable=False,
                added_at=event.timestamp,
            )
        )
        self._touch(conn, event, entry_count=playlists.c.entry_count + 1)

    @on(Playlist.EntryRemoved)
    def _entry_removed(self, conn: Connection, event: Any) -> None:
        entries = playlist_entries.c
        conn.execute(delete(playlist_entries).where(entries.entry_id == event.entry_id))
        conn.execute(
            update(playlist_entries)
            .where(entries.playlist_id == event.originator_id, entries.position > event.position)
            .values(position=entries.position - 1)
        )
        self._touch(conn, event, entry_count=playlists.c.entry_count - 1)

    @on(Playlist.EntryMoved)
    def _entry_moved(self, conn: Connection, event: Any) -> None:
        entries = playlist_entries.c
        start, end = event.from_position, event.to_position
        others = update(playlist_entries).where(
            entries.playlist_id == event.originator_id, entries.entry_id != event.entry_id
        )
        if start < end:
            # Moving down: the entries it passes move up one.
            conn.execute(
                others.where(entries.position > start, entries.position <= end).values(
                    position=entries.position - 1
                )
            )
        else:
            conn.execute(
                others.where(entries.position >= end, entries.position < start).values(
                    position=entries.position + 1
                )
            )
        conn.execute(
            update(playlist_entries).where(entries.entry_id == event.entry_id).values(position=end)
        )
        self._touch(conn, event)

    @on(Playlist.Deleted)
    def _deleted(self, conn: Connection, event: Any) -> None:
        conn.execute(
            delete(playlist_entries).where(playlist_entries.c.playlist_id == event.originator_id)
        )
        # The row stays (flagged) so that history and analytics can still name it.
        self._touch(conn, event, deleted=True, entry_count=0)

    @on(Track.Deleted)
    def _track_deleted(self, conn: Connection, event: Any) -> None:
        conn.execute(
            update(playlist_entries)
            .where(playlist_entries.c.track_id == event.originator_id)
            .values(unavailable=True)
        )

    @staticmethod
    def _count(conn: Connection, playlist_id: Any, column: str, delta: int) -> None:
        # Summed per playlist over the batch (see projections.increments).
        IncrementBatching.increment(conn, playlists, playlist_id, column, delta)

    @increments_only
    @on(Reaction.Set)
    def _reaction_set(self, conn: Connection, event: Any) -> None:
        if event.target_kind != "playlist":
            return
        self._count(conn, event.target_id, _COUNT_COLUMN[event.kind], 1)
        if event.replaced is not None:
            self._count(conn, event.target_id, _COUNT_COLUMN[event.replaced], -1)

    @increments_only
    @on(Reaction.Cleared)
    def _reaction_cleared(self, conn: Connection, event: Any) -> None:
        if event.target_kind == "playlist":
            self._count(conn, event.target_id, _COUNT_COLUMN[event.kind], -1)

    @increments_only
    @on(Play.Recorded)
    def _played(self, conn: Connection, event: Any) -> None:
        if event.target_kind == "playlist":
            self._count(conn, event.target_id, "plays", 1)
