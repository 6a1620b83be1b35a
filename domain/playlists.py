"""The Playlist aggregate: a named, ordered list of entries, each pointing at a track.

Entries have ids of their own, so the same track may stand in several entries
and a client can remove or move *that* one. Positions are always ``0..n-1``:
every event that changes the order records the positions it used, so a
projector can shift the other entries with set-based SQL instead of
rewriting the whole list.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Gone, InvalidValue, LimitReached, NoSuchPart, NotPermitted

VISIBILITIES = ("public", "private")
NAME_CLAIM = "playlist-name"

# Line breaks and tabs are welcome in a description; other control characters are not.
_DESCRIPTION_WHITESPACE = frozenset("\n\t")


def name_key(owner_id: UUID, name: str) -> str:
    """The claim key that makes a user's playlist names unique regardless of case."""
    return f"{owner_id}:{name.casefold()}"


@dataclass(frozen=True)
class PlaylistRules:
    """Lengths and limits of playlists; the values come from settings."""

    name_max: int = 100
    description_max: int = 2000
    max_entries: int = 1000

    def name(self, raw: str) -> str:
        """The name trimmed (NFC), after checking its length and characters."""
        value = unicodedata.normalize("NFC", raw).strip()
        if not value:
            raise InvalidValue("name", "must not be empty")
        if len(value) > self.name_max:
            raise InvalidValue("name", f"must be at most {self.name_max} characters long")
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise InvalidValue("name", "must not contain control characters")
        return value

    def description(self, raw: str | None) -> str:
        """The description trimmed (NFC); empty when absent."""
        value = unicodedata.normalize("NFC", raw or "").strip()
        if len(value) > self.description_max:
            raise InvalidValue(
                "description", f"must be at most {self.description_max} characters long"
            )
        if any(unicodedata.category(c) == "Cc" and c not in _DESCRIPTION_WHITESPACE for c in value):
            raise InvalidValue("description", "must not contain control characters")
        return value

    @staticmethod
    def visibility(raw: str) -> str:
        """``public`` or ``private``."""
        if raw not in VISIBILITIES:
            raise InvalidValue("visibility", "must be public or private")
        return raw


@dataclass(frozen=True)
class Entry:
    """One place in a playlist: its own id and the track it points at."""

    entry_id: UUID
    track_id: UUID


class Playlist(Aggregate):
    """A user's playlist. Only its owner changes it; a private one is hidden from others."""

    class Created(Aggregate.Created):
        """A playlist was created, empty."""

        owner_id: UUID
        name: str
        description: str
        visibility: str

    class Renamed(Aggregate.Event):
        """The name changed (the new name was claimed in the same transaction)."""

        name: str

    class Described(Aggregate.Event):
        """The description changed."""

        description: str

    class VisibilityChanged(Aggregate.Event):
        """The playlist became public or private."""

        visibility: str

    class EntryAdded(Aggregate.Event):
        """A track was put at ``position``; entries from there on moved one down."""

        entry_id: UUID
        track_id: UUID
        position: int

    class EntryRemoved(Aggregate.Event):
        """The entry at ``position`` was taken out; the ones after it moved one up."""

        entry_id: UUID
        track_id: UUID
        position: int

    class EntryMoved(Aggregate.Event):
        """An entry went from one position to another; the ones between shifted by one."""

        entry_id: UUID
        from_position: int
        to_position: int

    class Deleted(Aggregate.Event):
        """The owner deleted the playlist (its name was released in the same transaction)."""

    @classmethod
    def create(
        cls, playlist_id: UUID, owner_id: UUID, name: str, description: str, visibility: str
    ) -> Playlist:
        """A new empty playlist (fields already checked with :class:`PlaylistRules`)."""
        return cls._create(
            cls.Created,
            id=playlist_id,
            owner_id=owner_id,
            name=name,
            description=description,
            visibility=PlaylistRules.visibility(visibility),
        )

    @event(Created)
    def __init__(self, owner_id: UUID, name: str, description: str, visibility: str) -> None:
        self.owner_id = owner_id
        self.name = name
        self.description = description
        self.visibility = visibility
        self.entries: list[Entry] = []
        self.deleted = False

    @property
    def is_private(self) -> bool:
        """True when only the owner may see the playlist."""
        return self.visibility == "private"

    def visible_to(self, actor_id: UUID | None) -> bool:
        """True when the actor may see the playlist at all (it exists for them)."""
        return not self.deleted and (not self.is_private or actor_id == self.owner_id)

    def position_of(self, entry_id: UUID) -> int:
        """The entry's position; :class:`NoSuchPart` if the playlist holds no such entry."""
        for position, entry in enumerate(self.entries):
            if entry.entry_id == entry_id:
                return position
        raise NoSuchPart("this playlist has no such entry")

    def holds_track(self, track_id: UUID) -> bool:
        """True when some entry points at the track."""
        return any(entry.track_id == track_id for entry in self.entries)

    def _check_owner(self, actor_id: UUID) -> None:
        if self.deleted:
            raise Gone("playlist not found")
        if actor_id != self.owner_id:
            raise NotPermitted("only the owner may change this playlist")

    def rename(self, actor_id: UUID, name: str) -> None:
        """Change the name (already checked and claimed); the same name records nothing."""
        self._check_owner(actor_id)
        if name != self.name:
            self._renamed(name=name)

    @event(Renamed)
    def _renamed(self, name: str) -> None:
        self.name = name

    def describe(self, actor_id: UUID, description: str) -> None:
        """Change the description (already checked); the same text records nothing."""
        self._check_owner(actor_id)
        if description != self.description:
            self._described(description=description)

    @event(Described)
    def _described(self, description: str) -> None:
        self.description = description

    def change_visibility(self, actor_id: UUID, visibility: str) -> None:
        """Make the playlist public or private; no change, no event."""
        self._check_owner(actor_id)
        visibility = PlaylistRules.visibility(visibility)
        if visibility != self.visibility:
            self._visibility_changed(visibility=visibility)

    @event(VisibilityChanged)
    def _visibility_changed(self, visibility: str) -> None:
        self.visibility = visibility

    def add_entry(
        self,
        actor_id: UUID,
        entry_id: UUID,
        track_id: UUID,
        position: int | None,
        max_entries: int,
    ) -> int:
        """Put the track at ``position`` (the end when None); return the position used."""
        self._check_owner(actor_id)
        size = len(self.entries)
        if size >= max_entries:
            raise LimitReached(f"a playlist holds at most {max_entries} entries", limit=max_entries)
        if position is None:
            position = size
        elif not 0 <= position <= size:
            raise InvalidValue("position", f"must be between 0 and {size}")
        self._entry_added(entry_id=entry_id, track_id=track_id, position=position)
        return position

    @event(EntryAdded)
    def _entry_added(self, entry_id: UUID, track_id: UUID, position: int) -> None:
        self.entries.insert(position, Entry(entry_id, track_id))

    def remove_entry(self, actor_id: UUID, entry_id: UUID) -> None:
        """Take the entry out; the entries after it move up."""
        self._check_owner(actor_id)
        position = self.position_of(entry_id)
        self._entry_removed(
            entry_id=entry_id, track_id=self.entries[position].track_id, position=position
        )

    @event(EntryRemoved)
    def _entry_removed(self, entry_id: UUID, track_id: UUID, position: int) -> None:
        del self.entries[position]

    def move_entry(self, actor_id: UUID, entry_id: UUID, to_position: int) -> None:
        """Move the entry to ``to_position`` (0-based); moving it where it is records nothing."""
        self._check_owner(actor_id)
        from_position = self.position_of(entry_id)
        last = len(self.entries) - 1
        if not 0 <= to_position <= last:
            raise InvalidValue("to_position", f"must be between 0 and {last}")
        if to_position != from_position:
            self._entry_moved(
                entry_id=entry_id, from_position=from_position, to_position=to_position
            )

    @event(EntryMoved)
    def _entry_moved(self, entry_id: UUID, from_position: int, to_position: int) -> None:
        self.entries.insert(to_position, self.entries.pop(from_position))

    def delete(self, actor_id: UUID) -> None:
        """Delete the playlist (owner only)."""
        self._check_owner(actor_id)
        self._deleted()

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True
        self.entries = []
