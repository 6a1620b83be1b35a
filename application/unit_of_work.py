"""One command's view of the event store, and the loop that commits it.

A command is a function ``decide(uow) -> value``: it loads aggregates through
the unit of work, calls their methods, and returns a plain value. The runner
then appends every new event of that command in one ``save`` (one
transaction). When another writer got to one of the aggregates first, the
store refuses the whole save; the runner then replays the command on fresh
state, a bounded number of times, so that concurrent requests do not fail
because of each other.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import RecordConflictError

from application.errors import Contention, NotFound
from domain.claims import UniqueClaim

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What a command returned, and the log position reached by its events."""

    value: T
    position: int


class UnitOfWork:
    """The aggregates one command reads and changes, each loaded once."""

    def __init__(self, app: Application[UUID]) -> None:
        self._app = app
        self._aggregates: dict[UUID, Aggregate] = {}

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate, or None if it was never created or is of another type."""
        found = self._aggregates.get(aggregate_id)
        if found is None:
            try:
                found = self._app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
            self._aggregates[aggregate_id] = found
        return found if isinstance(found, cls) else None

    def get(self, cls: type[A], aggregate_id: UUID, what: str = "resource") -> A:
        """The aggregate; :class:`NotFound` if it does not exist."""
        found = self.find(cls, aggregate_id)
        if found is None:
            raise NotFound(f"{what} not found")
        return found

    def add(self, aggregate: A) -> A:
        """A new aggregate, to be saved with the command."""
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    def claim(self, kind: str, key: str, owner_id: UUID) -> None:
        """Take the unique ``key`` of ``kind`` for ``owner_id`` (see :mod:`domain.claims`)."""
        claim = self.find(UniqueClaim, UniqueClaim.id_for(kind, key))
        if claim is None:
            self.add(UniqueClaim.start(kind, key, owner_id))
        else:
            claim.claim(owner_id)

    def release(self, kind: str, key: str, owner_id: UUID) -> None:
        """Give up the unique ``key`` of ``kind`` if ``owner_id`` holds it."""
        claim = self.find(UniqueClaim, UniqueClaim.id_for(kind, key))
        if claim is not None:
            claim.release(owner_id)

    def owner_of(self, kind: str, key: str) -> UUID | None:
        """Who holds the unique ``key`` of ``kind``, if anyone."""
        claim = self.find(UniqueClaim, UniqueClaim.id_for(kind, key))
        return None if claim is None else claim.owner_id

    def collect_events(self) -> list[DomainEventProtocol[Any]]:
        """The new events of every aggregate touched, in the order they happened."""
        events: list[DomainEventProtocol[Any]] = []
        for aggregate in self._aggregates.values():
            events.extend(aggregate.collect_events())
        return events


class CommandRunner:
    """Runs commands against one event-sourced application, retrying lost races."""

    def __init__(
        self,
        app: Application[UUID],
        attempts: int,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._app = app
        self._attempts = max(1, attempts)
        self._on_commit = on_commit

    @property
    def app(self) -> Application[UUID]:
        """The application whose event store the commands write to."""
        return self._app

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self._app.recorder.max_notification_id() or 0

    def run(self, decide: Callable[[UnitOfWork], T]) -> Committed[T]:
        """Decide on fresh state and save; on a write conflict, decide again."""
        for attempt in range(self._attempts):
            uow = UnitOfWork(self._app)
            value = decide(uow)
            events = uow.collect_events()
            if not events:
                return Committed(value, self.head())
            try:
                recordings = self._app.save(*events)
            except RecordConflictError:
                # Jitter spreads out the retries of writers that collided.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
                continue
            position = max(r.notification.id for r in recordings)
            if self._on_commit is not None:
                self._on_commit(position)
            return Committed(value, position)
        raise Contention("too many concurrent changes to the same thing; try again")
