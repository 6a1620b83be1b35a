"""The policy that removes a deleted track's blob, driven by the log.

Not a read model: a follower of the log with a position of its own, run like
a projector. For each ``Track.Deleted`` it asks the application to reclaim
the blob, which removes it unless the same bytes belong to a live track again
(see :mod:`application.tracks`). When storage fails (or its circuit breaker
is open) the batch fails, its position does not move, and the runner retries
it later: the removal survives restarts because it is owed by the log, not
remembered in memory. Reclaiming is idempotent, so a batch applied again
after a crash does no harm.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Connection

from domain.tracks import Track
from projections.projector import Projector, on


class BlobReclaimer(Protocol):
    """What the policy needs from the application."""

    def reclaim_blob(self, sha256: str) -> bool:
        """Remove the blob unless a live track holds its content."""
        ...


class BlobCleanup(Projector):
    """After ``Track.Deleted``, remove the blob nobody references any more."""

    name = "blob_cleanup"
    version = 1
    tables = ()
    policy = True

    def __init__(self, reclaimer: BlobReclaimer) -> None:
        self._reclaimer = reclaimer

    @on(Track.Deleted)
    def _deleted(self, _conn: Connection, event: Any) -> None:
        self._reclaimer.reclaim_blob(event.sha256)
