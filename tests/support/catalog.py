"""Tracks for tests of playlists, reactions and plays, and a clock tests can step.

Tracks are created straight through the application's command runner (the
Track aggregate's own ``upload``), so these tests need no audio files, no blob
storage and no upload endpoint.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from application.unit_of_work import UnitOfWork
from domain.tracks import AudioFacts, Track, TrackMetadata
from infrastructure.bootstrap import Container


class SteppingClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current test time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward; return the new now."""
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``."""
        with self._lock:
            self._now = moment


def add_track(
    container: Container,
    uploader_id: UUID,
    *,
    title: str = "A Song",
    artist: str | None = "An Artist",
    duration_ms: int = 200_000,
) -> UUID:
    """A live track uploaded by ``uploader_id``; returns its id."""
    track_id = uuid4()
    audio = AudioFacts(
        sha256=secrets.token_hex(32),
        size_bytes=1234,
        mime_type="audio/mpeg",
        extension="mp3",
        duration_ms=duration_ms,
        bitrate=128_000,
        sample_rate=44_100,
        channels=2,
    )
    metadata = TrackMetadata(title=title, artist=artist)

    def decide(uow: UnitOfWork) -> UUID:
        uow.add(Track.upload(track_id, uploader_id, audio, metadata))
        return track_id

    return container.app._runner.run(decide).value


def delete_track(container: Container, track_id: UUID, uploader_id: UUID) -> int:
    """Delete the track as its uploader; returns the log position reached."""

    def decide(uow: UnitOfWork) -> None:
        uow.get(Track, track_id).delete(uploader_id)

    return container.app._runner.run(decide).position
