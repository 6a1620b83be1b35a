"""Answers kept by one query process until the read models change.

The read models change only when a projection commits, and every such commit
moves a row of ``projection_positions`` in the same transaction. A
:class:`ReadModelChanges` turns that into a *stamp* that differs after every
change; an answer kept under one stamp is served only while the stamp is the
same. So a kept answer is the answer the read models would give, give or take
the time the change takes to reach this process (a NOTIFY on PostgreSQL, about
a millisecond; nothing on SQLite, whose stamp is read on each lookup).

Entries also age out: after ``max_age`` seconds at most, a bound should a
change ever go unnoticed, and sooner when the caller says so (answers over a
window that ends "now", such as the week's top tracks, move with the clock,
not only with the log). Each entry's life is cut by a random part of up to a
quarter, so that answers made together (a burst of first requests) are not
all made again together. While the stamp is unknown (the change feed is
reconnecting), nothing is kept and nothing is served.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar
from uuid import UUID

AnswerKey = tuple[str, bytes, UUID | None]
"""A query's path, raw query string and viewer (None: anonymous)."""

Rendered = tuple[bytes, tuple[tuple[bytes, bytes], ...]]
"""An answer's body and headers, as sent."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_AGE_SECONDS = 300.0
_JITTER = 0.25
# What an entry costs beyond its value's own bytes (key, tuple, dict slot), roughly.
ENTRY_OVERHEAD_BYTES = 400


class ReadModelChanges(Protocol):
    """A stamp of the read models' state: equal stamps mean nothing changed in between."""

    @property
    def blocking(self) -> bool:
        """True when :meth:`current` reads the database (call it off the event loop)."""
        ...

    def current(self) -> Hashable | None:
        """The stamp now; None when it cannot be known (keep nothing, serve nothing)."""
        ...

    def close(self) -> None:
        """Release what the stamp is read from."""
        ...


class CurrentAnswers(Generic[K, V]):
    """Values by key, each valid while the read models keep the stamp it was made under.

    Bounded by the sum of the values' sizes (least recently used first out).
    Thread-safe: lookups come from the event loop, new answers from query threads.
    """

    def __init__(
        self,
        changes: ReadModelChanges,
        capacity_bytes: int,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.changes = changes
        self._capacity = capacity_bytes
        self._max_age = max_age
        self._clock = clock
        # key -> (stamp, deadline, value, weight)
        self._entries: OrderedDict[K, tuple[Hashable, float, V, int]] = OrderedDict()
        self._bytes = 0
        self._stamp: Hashable | None = None
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """What the kept values weigh, overheads included."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, stamp: Hashable | None) -> V | None:
        """The value kept for ``key`` under ``stamp`` (as :meth:`ReadModelChanges.current`
        gave it just now), or None."""
        if stamp is None:
            return None
        with self._lock:
            self._advance(stamp)
            entry = self._entries.get(key)
            if entry is None or entry[0] != stamp:
                return None
            if self._clock() >= entry[1]:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[2]

    def put(
        self, key: K, stamp: Hashable | None, value: V, size: int, max_age: float | None = None
    ) -> None:
        """Keep ``value``, made from the read models as they were at ``stamp``.

        ``stamp`` must be the one given to :meth:`get` before the read models
        were read: if a change was seen since, the value may predate it and is
        not kept. ``max_age`` shortens the value's life, for one made from
        inputs older than the stamp (a ranking of moments ago).
        """
        weight = size + ENTRY_OVERHEAD_BYTES
        if stamp is None or weight > self._capacity:
            return
        with self._lock:
            if stamp != self._stamp:
                return
            if key in self._entries:
                self._drop(key)
            age = self._max_age if max_age is None else min(max_age, self._max_age)
            age *= 1 - _JITTER * random.random()  # noqa: S311  (spreads expiries; no secret)
            self._entries[key] = (stamp, self._clock() + age, value, weight)
            self._bytes += weight
            while self._bytes > self._capacity:
                self._drop(next(iter(self._entries)))

    def _advance(self, stamp: Hashable) -> None:
        # A new stamp makes every kept value stale at once: free them now. A
        # counter only grows, so a smaller one is a request that read it just
        # before the latest change: it finds nothing, and wipes nothing.
        if stamp == self._stamp:
            return
        if isinstance(stamp, int) and isinstance(self._stamp, int) and stamp < self._stamp:
            return
        self._entries.clear()
        self._bytes = 0
        self._stamp = stamp

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry[3]
