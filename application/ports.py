"""Ports: what the application needs from the outside world, as protocols.

Adapters live in ``infrastructure``; the composition root picks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import StoredEvent


@runtime_checkable
class AggregateHistories(Protocol):
    """The event store read for many aggregates at once (the chained recorders)."""

    def select_events_after(self, versions: Mapping[UUID, int]) -> Sequence[StoredEvent]:
        """The events of each aggregate after the version given for it (0: all of them).

        Each aggregate's events come in version order.
        """
        ...


@runtime_checkable
class AwaitedEventStore(Protocol):
    """The group committer's three requests to the event store, awaited on an event loop.

    PostgreSQL's recorder offers them; a committer on the callers' own loop then
    needs no thread, and so hands nothing across threads (SQLite's does not:
    its committer stays a thread).
    """

    async def select_events_after_async(
        self, versions: Mapping[UUID, int]
    ) -> Sequence[StoredEvent]:
        """:meth:`AggregateHistories.select_events_after`, awaited."""
        ...

    async def insert_events_async(self, stored_events: Sequence[StoredEvent]) -> Sequence[int]:
        """Append the events in one transaction; their positions, in order."""
        ...

    async def max_notification_id_async(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        ...


class Clock(Protocol):
    """The current time, in UTC."""

    def now(self) -> datetime:
        """Now, timezone-aware UTC."""
        ...


class PasswordHasher(Protocol):
    """A slow, salted, memory-hard password hash."""

    def hash(self, password: str) -> str:
        """A new hash of ``password``."""
        ...

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``password_hash``.

        With no hash (unknown user) it verifies against a decoy and returns
        False, so that both paths cost the same time.
        """
        ...


class PersonalDataVault(Protocol):
    """Seals personal data with a key of its own per person (crypto-shredding).

    Sealed values may be stored anywhere, events included; forgetting the
    subject's key makes every one of them unreadable for good.
    """

    def seal(self, subject_id: UUID, plaintext: str) -> str:
        """``plaintext`` encrypted with the subject's key (created on first use)."""
        ...

    def unseal(self, subject_id: UUID, sealed: str) -> str | None:
        """The clear value, or None once the subject's key was forgotten."""
        ...

    def forget(self, subject_id: UUID) -> None:
        """Destroy the subject's key."""
        ...

    def preload(self, subject_ids: Iterable[UUID]) -> None:
        """Read many subjects' keys at once, fresh (before unsealing a batch of events)."""
        ...


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob: its key (the content's SHA-256), size and last write time."""

    key: str
    size: int
    modified_at: datetime


class BlobStore(Protocol):
    """Content-addressed storage of audio files, keyed by their SHA-256 (hex).

    Writes are atomic: a reader sees a whole blob or none. Storing a key that
    already exists keeps the stored bytes (same key, same content). Failures
    of the storage itself raise :class:`application.errors.StorageUnavailable`;
    a missing key raises :class:`application.errors.BlobNotFound`.
    """

    def put(self, key: str, source: Path, size: int) -> None:
        """Store the ``size`` bytes of the local file ``source`` under ``key``."""
        ...

    def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key``."""
        ...

    def stat(self, key: str) -> BlobInfo:
        """The blob's size and last write time."""
        ...

    def read(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive), into memory: for small ranges only."""
        ...

    def read_cached(self, key: str, start: int, end: int) -> memoryview | None:
        """Bytes ``start`` to ``end`` (exclusive) if they can be had without waiting on a
        disk or a network (the OS's page cache), else None: then :meth:`read` them.

        Cheap enough to call on an event loop; it never raises.
        """
        ...

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) as chunks of bounded size.

        The blob is opened before this returns (a missing blob or an
        unreachable store fails here, not half-way through a response).
        Closing the iterator releases the underlying file or connection.
        """
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, for zero-copy serving; None if not on local disk."""
        ...

    def delivery_path(self, key: str) -> str | None:
        """The blob's path relative to the store's root (``ab/cd/<sha256>``), for a web
        server in front that serves the files itself (nginx ``X-Accel-Redirect``); None
        where blobs are not files. Computed only: it neither checks nor touches storage."""
        ...

    def presigned_url(
        self, key: str, ttl_seconds: int, content_type: str, disposition: str
    ) -> str | None:
        """A URL anyone may GET the blob from for ``ttl_seconds``, answered with this
        ``Content-Type`` and ``Content-Disposition``; None where the store has no such
        thing. Signing is local computation: no call to the storage."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; removing a missing blob does nothing."""
        ...

    def list(self) -> Iterator[BlobInfo]:
        """Every stored blob (for garbage collection)."""
        ...

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Remove unfinished writes (temporary files, multipart uploads) started before
        ``older_than``; return how many were removed."""
        ...

    def health(self) -> None:
        """Return when the store answers; raise otherwise."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...


@dataclass(frozen=True)
class AudioTags:
    """Descriptive tags found in an audio file (untrusted: checked before use)."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None


@dataclass(frozen=True)
class ParsedAudio:
    """What inspecting an audio file's content established."""

    mime_type: str
    extension: str
    duration_ms: int
    bitrate: int | None
    sample_rate: int | None
    channels: int | None
    tags: AudioTags


class MediaInspector(Protocol):
    """Judges an uploaded file by its content alone (never its name or declared type)."""

    def inspect(self, path: Path) -> ParsedAudio:
        """The audio's type, stream facts and tags.

        Raises :class:`application.errors.UnsupportedMedia` when the content is
        not an accepted audio type, and :class:`application.errors.CorruptMedia`
        when it claims to be one but does not parse as a whole, playable file.
        """
        ...
