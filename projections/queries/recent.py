"""Answers read moments ago, kept by one process for its hottest reads.

Two reads are asked for far more often than the read model changes in a way
anyone could see:

- the track behind the audio routes: a player fetching a track in ranges asks
  for it many times a second, and every range would otherwise cost a
  read-model query (a thread hop and a round trip: more than sending a 1 MiB
  range from the page cache);
- the top lists of ``/stats``: the same ranking for every caller, and an
  aggregate over a window of the listening facts (milliseconds of database
  time each, where a lookup takes a tenth of one).

An entry is used for ``max_age`` seconds after it was read, then read again;
so a change reaches these answers up to that much later than the rest of the
read side. A request that asks for a position (``X-Min-Position``) reads the
read model itself. Misses are not remembered: a new upload is found at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_AGE_SECONDS = 0.5
CAPACITY = 4096


class RecentReads(Generic[K, V]):
    """Values by key, each for ``max_age`` seconds after it was read."""

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
        self._values: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value as read less than ``max_age`` seconds ago, or None."""
        found = self.get_with_time_left(key)
        return None if found is None else found[0]

    def get_with_time_left(self, key: K) -> tuple[V, float] | None:
        """The value as read less than ``max_age`` seconds ago and the seconds it has left."""
        entry = self._values.get(key)
        if entry is None:
            return None
        left = self._max_age - (self._clock() - entry[0])
        return None if left <= 0 else (entry[1], left)

    def remember(self, key: K, value: V) -> None:
        """Keep ``value``, just read from the read model."""
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = (self._clock(), value)
            while len(self._values) > self._capacity:
                del self._values[next(iter(self._values))]
