"""Commands on tracks: upload, edit, delete; and the removal of blobs nobody references.

The same bytes are one blob, named by their SHA-256, and at most one live
track: a ``content`` claim keyed by the hash (see :mod:`domain.claims`) is
taken in the same save as ``Track.Uploaded`` and released in the same save as
``Track.Deleted``.

Blobs are removed only under that claim. Whoever removes one (the cleanup
after a deletion, or garbage collection) first takes the content claim for
:data:`BLOB_RECLAIMER` — which fails if a live track holds it — then deletes,
then releases. An upload notes the claim's version *before* it stores the
blob and saves only if the claim is still at that version: so no removal can
slip between storing a blob and recording the track that needs it, and no
event ever points at a missing blob.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from application.context import Handlers
from application.errors import (
    Contention,
    DuplicateTrack,
    NotFound,
    StorageUnavailable,
)
from application.ports import AudioTags, BlobStore, MediaInspector
from application.unit_of_work import Committed, UnitOfWork
from domain.claims import UniqueClaim
from domain.errors import InvalidValue
from domain.tracks import EDITABLE_FIELDS, AudioFacts, Track, TrackMetadata, TrackRules
from domain.users import User

log = logging.getLogger(__name__)

CONTENT = "content"
# The owner a content claim has while its blob is being removed.
BLOB_RECLAIMER = uuid5(NAMESPACE_URL, "https://theplaylist.invalid/blob-reclaimer")
_UPLOAD_ATTEMPTS = 5
UNTITLED = "Untitled"


@dataclass(frozen=True)
class UploadedFile:
    """An upload already spooled to a local file, hashed while it arrived."""

    path: Path
    sha256: str
    size_bytes: int
    filename: str | None = None


@dataclass(frozen=True)
class TrackFields:
    """Metadata given with an upload; each one given overrides the file's tags."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None


@dataclass(frozen=True)
class GarbageReport:
    """What a garbage collection found and did."""

    examined: int = 0
    referenced: int = 0
    recent: int = 0
    removed: int = 0
    bytes_removed: int = 0
    incomplete_removed: int = 0


class _ClaimMoved(Exception):
    """The content claim changed after the blob was stored: store it again, then retry."""


@dataclass(frozen=True)
class _ClaimSeen:
    owner: UUID | None
    version: int | None


def _lenient(rules: TrackRules, raw: str | None) -> str | None:
    """A tag value made acceptable (tags are untrusted): no control characters, cut to size."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", raw)
    text = "".join(c for c in text if unicodedata.category(c) != "Cc").strip()
    return text[: rules.text_max].strip() or None


def _stem(filename: str | None) -> str | None:
    if not filename:
        return None
    # Browsers on Windows may send the whole path.
    name = PureWindowsPath(PurePosixPath(filename).name).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return stem or None


class TrackCommands(Handlers):
    """Track commands. Blob storage and media inspection are ports (see ``application.ports``)."""

    _blobs: BlobStore
    _media: MediaInspector
    _track_rules: TrackRules

    # --- upload -------------------------------------------------------------------------

    def upload_track(
        self, uploader_id: UUID, upload: UploadedFile, fields: TrackFields
    ) -> Committed[UUID]:
        """Judge, parse and store an uploaded file, then record the track.

        In this order: the given metadata is checked (422 ``validation_error``),
        the content's type judged (:class:`application.errors.UnsupportedMedia`),
        the audio parsed (:class:`application.errors.CorruptMedia`), duplicates
        refused (:class:`application.errors.DuplicateTrack`), the blob stored,
        and only then ``Track.Uploaded`` appended with the content claim.
        """
        given = self._checked_fields(fields)
        self._live_user(UnitOfWork(self._runner.app), uploader_id)
        audio = self._media.inspect(upload.path)
        metadata = self._metadata(given, audio.tags, upload.filename)
        facts = AudioFacts(
            sha256=upload.sha256,
            size_bytes=upload.size_bytes,
            mime_type=audio.mime_type,
            extension=audio.extension,
            duration_ms=audio.duration_ms,
            bitrate=audio.bitrate,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
        )
        track_id = uuid4()
        for _ in range(_UPLOAD_ATTEMPTS):
            seen = self._content_claim(upload.sha256)
            self._refuse_taken(seen)
            self._blobs.put(upload.sha256, upload.path, upload.size_bytes)
            try:
                return self._runner.run(
                    self._record_upload(track_id, uploader_id, facts, metadata, seen)
                )
            except _ClaimMoved:
                continue
            except DuplicateTrack:
                raise
            except Exception:
                # The blob may now be an orphan: remove it unless a live track needs it.
                self._reclaim_quietly(upload.sha256)
                raise
        raise Contention("this file is being uploaded or removed right now; try again")

    def _record_upload(
        self,
        track_id: UUID,
        uploader_id: UUID,
        facts: AudioFacts,
        metadata: TrackMetadata,
        seen: _ClaimSeen,
    ) -> Callable[[UnitOfWork], UUID]:
        def decide(uow: UnitOfWork) -> UUID:
            claim = uow.find(UniqueClaim, UniqueClaim.id_for(CONTENT, facts.sha256))
            if claim is not None and claim.owner_id not in (None, BLOB_RECLAIMER):
                raise DuplicateTrack(claim.owner_id)
            if (None if claim is None else claim.version) != seen.version:
                raise _ClaimMoved
            self._live_user(uow, uploader_id)
            uow.claim(CONTENT, facts.sha256, track_id)
            uow.add(Track.upload(track_id, uploader_id, facts, metadata))
            return track_id

        return decide

    def _content_claim(self, sha256: str) -> _ClaimSeen:
        claim = UnitOfWork(self._runner.app).find(UniqueClaim, UniqueClaim.id_for(CONTENT, sha256))
        return (
            _ClaimSeen(None, None) if claim is None else _ClaimSeen(claim.owner_id, claim.version)
        )

    @staticmethod
    def _refuse_taken(seen: _ClaimSeen) -> None:
        if seen.owner == BLOB_RECLAIMER:
            raise StorageUnavailable("this file is being removed from storage; try again", 1)
        if seen.owner is not None:
            raise DuplicateTrack(seen.owner)

    @staticmethod
    def _live_user(uow: UnitOfWork, user_id: UUID) -> None:
        user = uow.find(User, user_id)
        if user is None or user.deleted:
            raise NotFound("user not found")

    def _checked_fields(self, fields: TrackFields) -> TrackFields:
        rules = self._track_rules
        return TrackFields(
            title=rules.text("title", fields.title),
            artist=rules.text("artist", fields.artist),
            album=rules.text("album", fields.album),
            genre=rules.text("genre", fields.genre),
            year=rules.year(fields.year),
        )

    def _metadata(self, given: TrackFields, tags: AudioTags, filename: str | None) -> TrackMetadata:
        rules = self._track_rules
        tag_year = (
            tags.year
            if tags.year is not None and rules.year_min <= tags.year <= rules.year_max
            else None
        )
        title = given.title or _lenient(rules, tags.title) or _lenient(rules, _stem(filename))
        return rules.metadata(
            TrackMetadata(
                title=title or UNTITLED,
                artist=given.artist or _lenient(rules, tags.artist),
                album=given.album or _lenient(rules, tags.album),
                genre=given.genre or _lenient(rules, tags.genre),
                year=given.year if given.year is not None else tag_year,
            )
        )

    # --- edit and delete ----------------------------------------------------------------

    def edit_track(
        self, actor_id: UUID, track_id: UUID, changes: dict[str, str | int | None]
    ) -> Committed[UUID]:
        """Change some of title, artist, album, genre, year (uploader only)."""
        checked = self._checked_changes(changes)

        def decide(uow: UnitOfWork) -> UUID:
            uow.get(Track, track_id, "track").edit(actor_id, checked)
            return track_id

        return self._runner.run(decide)

    def _checked_changes(self, changes: dict[str, str | int | None]) -> dict[str, str | int | None]:
        rules = self._track_rules
        checked: dict[str, str | int | None] = {}
        for field_name, value in changes.items():
            if field_name not in EDITABLE_FIELDS:
                raise InvalidValue(field_name, "cannot be edited")
            if field_name == "year":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise InvalidValue("year", "must be a whole number")
                checked["year"] = rules.year(value)
            else:
                if value is not None and not isinstance(value, str):
                    raise InvalidValue(field_name, "must be text")
                checked[field_name] = rules.text(field_name, value, required=field_name == "title")
        return checked

    def delete_track(self, actor_id: UUID, track_id: UUID) -> Committed[UUID]:
        """Delete the track (uploader only) and free its content for a new upload.

        The blob is removed afterwards by the cleanup that follows the log
        (:mod:`projections.blob_cleanup`), unless the same bytes are live again.
        """

        def decide(uow: UnitOfWork) -> UUID:
            track = uow.get(Track, track_id, "track")
            track.delete(actor_id)
            uow.release(CONTENT, track.audio.sha256, track.id)
            return track_id

        return self._runner.run(decide)

    # --- blob removal -------------------------------------------------------------------

    def content_owner(self, sha256: str) -> UUID | None:
        """The live track holding these bytes, if any (the reclaimer while it removes them)."""
        return self._content_claim(sha256).owner

    def reclaim_blob(self, sha256: str) -> bool:
        """Remove the blob unless a live track holds its content; True when removed.

        Safe to repeat and to run concurrently with uploads of the same bytes
        (see the module's docstring). Storage failures raise
        :class:`application.errors.StorageUnavailable` with the claim given back.
        """

        def take(uow: UnitOfWork) -> bool:
            claim = uow.find(UniqueClaim, UniqueClaim.id_for(CONTENT, sha256))
            if claim is not None and claim.owner_id not in (None, BLOB_RECLAIMER):
                return False
            uow.claim(CONTENT, sha256, BLOB_RECLAIMER)
            return True

        def give_back(uow: UnitOfWork) -> None:
            uow.release(CONTENT, sha256, BLOB_RECLAIMER)

        # Asked first, through the breaker: while storage is down this fails fast,
        # before any claim is written to the log.
        if not self._blobs.exists(sha256):
            return False
        if not self._runner.run(take).value:
            return False
        try:
            self._blobs.delete(sha256)
        finally:
            self._runner.run(give_back)
        log.info("blob removed", extra={"sha256": sha256})
        return True

    def _reclaim_quietly(self, sha256: str) -> None:
        try:
            self.reclaim_blob(sha256)
        except Exception:  # garbage collection will get it
            log.warning("could not remove a blob left by a failed upload", exc_info=True)

    def collect_garbage(self, older_than: datetime, *, dry_run: bool = False) -> GarbageReport:
        """Remove blobs no live track holds, written before ``older_than``.

        Recent blobs are left alone: an upload may be about to record its track.
        Unfinished writes (temporary files, multipart uploads) older than that go too.
        """
        examined = referenced = recent = removed = bytes_removed = 0
        for blob in self._blobs.list():
            examined += 1
            if blob.modified_at >= older_than:
                recent += 1
                continue
            owner = self.content_owner(blob.key)
            if owner is not None and owner != BLOB_RECLAIMER:
                referenced += 1
                continue
            if dry_run or self.reclaim_blob(blob.key):
                removed += 1
                bytes_removed += blob.size
            else:
                referenced += 1
        incomplete = 0 if dry_run else self._blobs.sweep_incomplete(older_than)
        return GarbageReport(examined, referenced, recent, removed, bytes_removed, incomplete)
