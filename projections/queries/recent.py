"""Tracks read moments ago, kept for the audio routes of one process.

A player fetching a track in ranges asks for it many times a second, and
every range would otherwise cost a read-model query (a thread hop and a round
trip: more than sending a 1 MiB range from the page cache). An entry is used
for ``max_age`` seconds after it was read, then read again; so an edit or a
deletion reaches the audio routes up to that much later than the rest of the
read side. A request that asks for a position (``X-Min-Position``) reads the
read model itself. Tracks not found are not remembered: a new upload is found
at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from uuid import UUID

from projections.queries.tracks import TrackRow

MAX_AGE_SECONDS = 0.5
CAPACITY = 4096


class RecentTracks:
    """Live tracks by id, each for ``max_age`` seconds after it was read."""

    def __init__(
        self,
        max_age: float = MAX_AGE_SECONDS,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._capacity = capacity
        self._clock = clock
        # Insertion order is age order: the oldest entry is the first to go.
        self._rows: dict[UUID, tuple[float, TrackRow]] = {}
        self._lock = threading.Lock()

    def get(self, track_id: UUID) -> TrackRow | None:
        """The track as read less than ``max_age`` seconds ago, or None."""
        entry = self._rows.get(track_id)
        if entry is None or self._clock() - entry[0] >= self._max_age:
            return None
        return entry[1]

    def remember(self, row: TrackRow) -> None:
        """Keep ``row``, just read from the read model."""
        with self._lock:
            self._rows.pop(row.id, None)
            self._rows[row.id] = (self._clock(), row)
            while len(self._rows) > self._capacity:
                del self._rows[next(iter(self._rows))]
