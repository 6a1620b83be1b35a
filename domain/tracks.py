"""The Track aggregate: an uploaded audio file and its metadata."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Gone, InvalidValue, NotPermitted

EDITABLE_FIELDS = ("title", "artist", "album", "genre", "year")


@dataclass(frozen=True)
class AudioFacts:
    """What parsing the file established; never edited afterwards."""

    sha256: str
    size_bytes: int
    mime_type: str
    extension: str
    duration_ms: int
    bitrate: int | None
    sample_rate: int | None
    channels: int | None


@dataclass(frozen=True)
class TrackMetadata:
    """The editable description of a track."""

    title: str
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None


@dataclass(frozen=True)
class TrackRules:
    """Lengths and ranges of track metadata; the values come from settings."""

    text_max: int = 200
    year_min: int = 1000
    year_max: int = 9999

    def text(self, field: str, raw: str | None, *, required: bool = False) -> str | None:
        """The value trimmed (NFC), None when empty and optional."""
        if raw is None:
            if required:
                raise InvalidValue(field, "is required")
            return None
        value = unicodedata.normalize("NFC", raw).strip()
        if not value:
            if required:
                raise InvalidValue(field, "must not be empty")
            return None
        if len(value) > self.text_max:
            raise InvalidValue(field, f"must be at most {self.text_max} characters long")
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise InvalidValue(field, "must not contain control characters")
        return value

    def year(self, raw: int | None) -> int | None:
        """The year, checked against the allowed range."""
        if raw is None:
            return None
        if not self.year_min <= raw <= self.year_max:
            raise InvalidValue("year", f"must be between {self.year_min} and {self.year_max}")
        return raw

    def metadata(self, metadata: TrackMetadata) -> TrackMetadata:
        """The metadata with every field checked and normalised."""
        return TrackMetadata(
            title=self.text("title", metadata.title, required=True) or "",
            artist=self.text("artist", metadata.artist),
            album=self.text("album", metadata.album),
            genre=self.text("genre", metadata.genre),
            year=self.year(metadata.year),
        )


class Track(Aggregate):
    """An audio file someone uploaded. Only its uploader may edit or delete it."""

    class Uploaded(Aggregate.Created):
        """A track was uploaded; its blob was stored before this was recorded."""

        uploader_id: UUID
        sha256: str
        size_bytes: int
        mime_type: str
        extension: str
        duration_ms: int
        bitrate: int | None
        sample_rate: int | None
        channels: int | None
        title: str
        artist: str | None
        album: str | None
        genre: str | None
        year: int | None

    class MetadataEdited(Aggregate.Event):
        """Some of title, artist, album, genre, year changed (``changes`` holds only those)."""

        changes: dict[str, str | int | None]

    class Deleted(Aggregate.Event):
        """The uploader deleted the track; its blob is removed afterwards by a policy."""

        sha256: str

    @classmethod
    def upload(
        cls, track_id: UUID, uploader_id: UUID, audio: AudioFacts, metadata: TrackMetadata
    ) -> Track:
        """A new track (metadata already checked with :class:`TrackRules`)."""
        if audio.duration_ms <= 0:
            raise InvalidValue("file", "the audio has no duration")
        return cls._create(
            cls.Uploaded,
            id=track_id,
            uploader_id=uploader_id,
            sha256=audio.sha256,
            size_bytes=audio.size_bytes,
            mime_type=audio.mime_type,
            extension=audio.extension,
            duration_ms=audio.duration_ms,
            bitrate=audio.bitrate,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            title=metadata.title,
            artist=metadata.artist,
            album=metadata.album,
            genre=metadata.genre,
            year=metadata.year,
        )

    @event(Uploaded)
    def __init__(
        self,
        uploader_id: UUID,
        sha256: str,
        size_bytes: int,
        mime_type: str,
        extension: str,
        duration_ms: int,
        bitrate: int | None,
        sample_rate: int | None,
        channels: int | None,
        title: str,
        artist: str | None,
        album: str | None,
        genre: str | None,
        year: int | None,
    ) -> None:
        self.uploader_id = uploader_id
        self.audio = AudioFacts(
            sha256, size_bytes, mime_type, extension, duration_ms, bitrate, sample_rate, channels
        )
        self.metadata = TrackMetadata(title, artist, album, genre, year)
        self.deleted = False

    def _check_owner(self, actor_id: UUID) -> None:
        if self.deleted:
            raise Gone("track not found")
        if actor_id != self.uploader_id:
            raise NotPermitted("only the uploader may change this track")

    def edit(self, actor_id: UUID, changes: dict[str, str | int | None]) -> None:
        """Change metadata fields (checked with :class:`TrackRules`); no real change, no event."""
        self._check_owner(actor_id)
        unknown = set(changes) - set(EDITABLE_FIELDS)
        if unknown:
            raise InvalidValue(sorted(unknown)[0], "cannot be edited")
        if "title" in changes and not changes["title"]:
            raise InvalidValue("title", "must not be empty")
        current = vars(self.metadata)
        effective = {k: v for k, v in changes.items() if current[k] != v}
        if effective:
            self._edited(changes=effective)

    @event(MetadataEdited)
    def _edited(self, changes: dict[str, str | int | None]) -> None:
        self.metadata = TrackMetadata(**{**vars(self.metadata), **changes})

    def delete(self, actor_id: UUID) -> None:
        """Delete the track (uploader only)."""
        self._check_owner(actor_id)
        self._deleted(sha256=self.audio.sha256)

    @event(Deleted)
    def _deleted(self, sha256: str) -> None:
        self.deleted = True
