"""The memory of recent reads: bounded in age and in size."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from projections.queries.recent import RecentReads
from projections.queries.tracks import TrackCounts, TrackRow

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _track(title: str = "Song") -> TrackRow:
    return TrackRow(
        id=uuid.uuid4(),
        title=title,
        artist=None,
        album=None,
        genre=None,
        year=None,
        duration_ms=1000,
        bitrate=None,
        sample_rate=None,
        channels=None,
        mime_type="audio/mpeg",
        extension="mp3",
        size_bytes=10,
        sha256="0" * 64,
        uploader_id=uuid.uuid4(),
        created_at=NOW,
        updated_at=NOW,
        counts=TrackCounts(0, 0, 0, 0),
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_track_is_served_for_max_age_after_it_was_read_then_read_again() -> None:
    clock = _Clock()
    recent = RecentReads[uuid.UUID, TrackRow](max_age=0.5, clock=clock)
    track = _track()
    assert recent.get(track.id) is None
    recent.remember(track.id, track)
    clock.now += 0.49
    assert recent.get(track.id) == track
    clock.now += 0.01
    assert recent.get(track.id) is None
    edited = replace(track, title="Edited")
    recent.remember(edited.id, edited)
    assert recent.get(track.id) == edited


def test_the_oldest_reads_go_first_when_full() -> None:
    clock = _Clock()
    recent = RecentReads[uuid.UUID, TrackRow](max_age=10, capacity=3, clock=clock)
    tracks = [_track(str(n)) for n in range(4)]
    for track in tracks[:3]:
        recent.remember(track.id, track)
        clock.now += 1
    recent.remember(tracks[0].id, tracks[0])  # read again: now the newest
    recent.remember(tracks[3].id, tracks[3])
    assert [recent.get(t.id) for t in tracks] == [tracks[0], None, tracks[2], tracks[3]]
