"""Commands on playlists: create, change, delete, and add, remove or move entries.

Every change may be conditional: with ``expected_version`` (HTTP ``If-Match``)
the command is refused with :class:`PreconditionFailed` unless the playlist is
still at that version. Without it, concurrent changes are all applied: a
command that loses a race is decided again on the fresh playlist, so forty
parallel additions give forty entries.

A private playlist does not exist for anyone but its owner: commands from
others are :class:`NotFound`, never :class:`Forbidden`, so its existence does
not leak. Others may see a public playlist but not change it
(:class:`domain.errors.NotPermitted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from application.context import Handlers
from application.errors import NotFound, PreconditionFailed
from application.unit_of_work import Committed, UnitOfWork
from domain.errors import NotPermitted
from domain.playlists import NAME_CLAIM, Playlist, PlaylistRules, name_key
from domain.tracks import Track


@dataclass(frozen=True)
class PlaylistChanged:
    """The playlist a command changed, and its version afterwards (for ``If-Match``)."""

    id: UUID
    version: int


@dataclass(frozen=True)
class EntryAdded:
    """The entry a command added: its id, where it went, and the playlist's new version."""

    id: UUID
    playlist_id: UUID
    position: int
    version: int


def visible_playlist(uow: UnitOfWork, playlist_id: UUID, actor_id: UUID | None) -> Playlist:
    """The playlist as the actor may see it; :class:`NotFound` if deleted or hidden from them."""
    playlist = uow.find(Playlist, playlist_id)
    if playlist is None or not playlist.visible_to(actor_id):
        raise NotFound("playlist not found")
    return playlist


def live_track(uow: UnitOfWork, track_id: UUID) -> Track:
    """The track; :class:`NotFound` if it never existed or was deleted."""
    track = uow.find(Track, track_id)
    if track is None or track.deleted:
        raise NotFound("track not found")
    return track


class PlaylistCommands(Handlers):
    """Playlist commands. Names are unique per owner (case-insensitively) through claims."""

    @property
    def _playlist_rules(self) -> PlaylistRules:
        return self._rules.playlists

    def _owned(
        self, uow: UnitOfWork, playlist_id: UUID, actor_id: UUID, expected_version: int | None
    ) -> Playlist:
        playlist = visible_playlist(uow, playlist_id, actor_id)
        if playlist.owner_id != actor_id:
            raise NotPermitted("only the owner may change this playlist")
        if expected_version is not None and playlist.version != expected_version:
            raise PreconditionFailed(
                f"the playlist is at version {playlist.version}, not {expected_version}",
                current_version=playlist.version,
            )
        return playlist

    def create_playlist(
        self, owner_id: UUID, name: str, description: str | None, visibility: str
    ) -> Committed[PlaylistChanged]:
        """A new empty playlist; :class:`domain.errors.AlreadyClaimed` if the owner has the name."""
        rules = self._playlist_rules
        name = rules.name(name)
        description = rules.description(description)
        visibility = rules.visibility(visibility)
        playlist_id = uuid4()

        def decide(uow: UnitOfWork) -> PlaylistChanged:
            uow.claim(NAME_CLAIM, name_key(owner_id, name), playlist_id)
            playlist = uow.add(
                Playlist.create(playlist_id, owner_id, name, description, visibility)
            )
            return PlaylistChanged(playlist_id, playlist.version)

        return self._runner.run(decide)

    def change_playlist(
        self,
        actor_id: UUID,
        playlist_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        visibility: str | None = None,
        expected_version: int | None = None,
    ) -> Committed[PlaylistChanged]:
        """Change the name, description and/or visibility (owner only)."""
        rules = self._playlist_rules
        new_name = rules.name(name) if name is not None else None
        new_description = rules.description(description) if description is not None else None
        new_visibility = rules.visibility(visibility) if visibility is not None else None

        def decide(uow: UnitOfWork) -> PlaylistChanged:
            playlist = self._owned(uow, playlist_id, actor_id, expected_version)
            if new_name is not None and new_name != playlist.name:
                old_key = name_key(playlist.owner_id, playlist.name)
                new_key = name_key(playlist.owner_id, new_name)
                if new_key != old_key:
                    uow.claim(NAME_CLAIM, new_key, playlist.id)
                    uow.release(NAME_CLAIM, old_key, playlist.id)
                playlist.rename(actor_id, new_name)
            if new_description is not None:
                playlist.describe(actor_id, new_description)
            if new_visibility is not None:
                playlist.change_visibility(actor_id, new_visibility)
            return PlaylistChanged(playlist.id, playlist.version)

        return self._runner.run(decide)

    def delete_playlist(
        self, actor_id: UUID, playlist_id: UUID, expected_version: int | None = None
    ) -> Committed[PlaylistChanged]:
        """Delete the playlist and free its name (owner only)."""

        def decide(uow: UnitOfWork) -> PlaylistChanged:
            playlist = self._owned(uow, playlist_id, actor_id, expected_version)
            uow.release(NAME_CLAIM, name_key(playlist.owner_id, playlist.name), playlist.id)
            playlist.delete(actor_id)
            return PlaylistChanged(playlist.id, playlist.version)

        return self._runner.run(decide)

    def add_entry(
        self,
        actor_id: UUID,
        playlist_id: UUID,
        track_id: UUID,
        position: int | None = None,
        expected_version: int | None = None,
    ) -> Committed[EntryAdded]:
        """Put a live track at ``position`` (the end when None); the same track may recur."""
        entry_id = uuid4()
        max_entries = self._playlist_rules.max_entries

        def decide(uow: UnitOfWork) -> EntryAdded:
            playlist = self._owned(uow, playlist_id, actor_id, expected_version)
            live_track(uow, track_id)
            used = playlist.add_entry(actor_id, entry_id, track_id, position, max_entries)
            return EntryAdded(entry_id, playlist.id, used, playlist.version)

        return self._runner.run(decide)

    def remove_entry(
        self,
        actor_id: UUID,
        playlist_id: UUID,
        entry_id: UUID,
        expected_version: int | None = None,
    ) -> Committed[PlaylistChanged]:
        """Take one entry out (also one whose track was deleted)."""

        def decide(uow: UnitOfWork) -> PlaylistChanged:
            playlist = self._owned(uow, playlist_id, actor_id, expected_version)
            playlist.remove_entry(actor_id, entry_id)
            return PlaylistChanged(playlist.id, playlist.version)

        return self._runner.run(decide)

    def move_entry(
        self,
        actor_id: UUID,
        playlist_id: UUID,
        entry_id: UUID,
        to_position: int,
        expected_version: int | None = None,
    ) -> Committed[PlaylistChanged]:
        """Move one entry to ``to_position`` (0-based); the others keep their order."""

        def decide(uow: UnitOfWork) -> PlaylistChanged:
            playlist = self._owned(uow, playlist_id, actor_id, expected_version)
            playlist.move_entry(actor_id, entry_id, to_position)
            return PlaylistChanged(playlist.id, playlist.version)

        return self._runner.run(decide)
