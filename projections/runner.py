"""Follows the event log and feeds a projector, one transaction per batch.

The read-model writes of a batch and the position reached commit together, so
a runner killed at any instant resumes exactly where its last commit left it:
no event lost, none applied twice. The position update is also a guard: it
comes first in the batch's transaction and only succeeds from the position
the batch started at, so two runners of the same projection can never both
apply a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from projections.projector import Projector
from projections.schema import install_change_notice, metadata, projection_positions

log = logging.getLogger(__name__)


class Wakeup(Protocol):
    """Tells a waiting runner that new events may have been recorded."""

    def wait(self, timeout: float) -> None:
        """Return when woken or after ``timeout`` seconds."""
        ...


Decode = Callable[[Notification], Any]
"""Turns a stored notification into its domain event."""


class PositionMoved(Exception):
    """Another runner of the same projection committed first; re-read and go on."""


def create_read_models(engine: Engine) -> None:
    """Create the read-model tables that do not exist yet, and the change notice."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        install_change_notice(conn)


def read_position(conn: Connection, name: str) -> int:
    """The position a projection has reached (0 before its first batch)."""
    value = conn.execute(
        select(projection_positions.c.position).where(projection_positions.c.name == name)
    ).scalar_one_or_none()
    return int(value or 0)


class ProjectionRunner:
    """Runs one projector over the log of one application recorder."""

    def __init__(
        self,
        projector: Projector,
        engine: Engine,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        *,
        batch_size: int = 500,
        commit_hooks: bool = True,
    ) -> None:
        self.projector = projector
        self._engine = engine
        self._recorder = recorder
        self._mapper = mapper
        self._batch_size = batch_size
        # Off for a rebuild's shadow: the hooks act on the live model.
        self._commit_hooks = commit_hooks
        # The position this runner last committed, so a batch need not read it
        # first (one query fewer per batch and per projector). Should anything
        # else move it (a rebuild's swap, a second runner), the guarded update
        # of the next batch fails and the position is read again.
        self._committed: int | None = None

    @property
    def name(self) -> str:
        """The projection's name."""
        return self.projector.name

    def position(self) -> int:
        """The position reached, as committed."""
        with self._engine.connect() as conn:
            return read_position(conn, self.name)

    def run_batch(self) -> int:
        """Apply the next batch of events, if any; return how many were read."""
        start = self._start()
        notifications = self._recorder.select_notifications(
            start=start, limit=self._batch_size, inclusive_of_start=False
        )
        self._advance(start, notifications, self._mapper.to_domain_event)
        return len(notifications)

    def apply_read(self, after: int, notifications: Sequence[Notification], decode: Decode) -> None:
        """Apply notifications read for several runners: those past this one's position.

        ``notifications`` are the log's events after position ``after``. A
        runner whose position is behind ``after`` (moved back by someone else)
        takes none of them: its own next batch reads what it lacks.
        """
        start = self._start()
        if start >= after:
            self._advance(start, [n for n in notifications if n.id > start], decode)

    def _start(self) -> int:
        return self._committed if self._committed is not None else self.position()

    def _advance(self, start: int, notifications: Sequence[Notification], decode: Decode) -> None:
        if notifications:
            self._committed = None
            try:
                self._apply(start, notifications, decode)
            except PositionMoved:
                log.info("projection %s: another runner moved on; re-reading", self.name)
            else:
                self._committed = notifications[-1].id
        else:
            self._committed = start

    def catch_up(self) -> int:
        """Apply batches until the log is exhausted; return the position reached."""
        while self.run_batch():
            pass
        return self.position()

    def run(
        self,
        stop: threading.Event,
        wakeup: Wakeup,
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        """Follow the log until ``stop`` is set; wait for a wake-up when idle.

        A batch starts at least ``coalesce`` seconds after the previous one.
        Under load, commits arrive every few milliseconds and each would wake
        every projector for a batch of a handful of events, whose fixed cost
        (reading the log, a transaction, the position) dominates; spacing the
        batches folds those commits into one. An idle projector is not
        delayed: its last batch is long past when a commit wakes it.
        ``on_batch`` is called after each batch that read events.
        """
        failures = 0
        began = 0.0
        while not stop.is_set():
            try:
                if stop.wait(max(0.0, began + coalesce - time.monotonic())):
                    break
                began = time.monotonic()
                if self.run_batch() == 0:
                    wakeup.wait(idle_wait)
                elif on_batch is not None:
                    on_batch()
                if failures:
                    log.info("projection %s recovered after %d failures", self.name, failures)
                failures = 0
            except Exception as error:
                # A database or storage outage must not kill the projector: back off
                # exponentially (up to 30 s) and log the trace once, not once a second.
                failures += 1
                if failures == 1:
                    log.exception("projection %s failed a batch; retrying", self.name)
                else:
                    log.warning(
                        "projection %s failed again (%d): %s: %s",
                        self.name,
                        failures,
                        type(error).__name__,
                        error,
                    )
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _apply(self, start: int, notifications: Sequence[Notification], decode: Decode) -> None:
        events: list[Any] = [decode(n) for n in notifications if self.projector.handles(n.topic)]
        end = notifications[-1].id
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            # The guard first: a batch that another runner already applied fails
            # here, before any of its writes could collide with that runner's rows
            # (a duplicate key would be a failure, not a lost race); the row lock
            # also makes a concurrent runner of this projection wait for this batch.
            moved = conn.execute(
                update(projection_positions)
                .where(
                    projection_positions.c.name == self.name,
                    projection_positions.c.position == start,
                )
                .values(position=end, updated_at=now)
            ).rowcount
            if moved == 0:
                if start != 0 or read_position(conn, self.name) != 0:
                    raise PositionMoved
                # First batch ever: the row does not exist yet. A concurrent first
                # batch fails on the primary key and rolls back.
                try:
                    conn.execute(
                        insert(projection_positions).values(
                            name=self.name,
                            position=end,
                            version=self.projector.version,
                            updated_at=now,
                        )
                    )
                except IntegrityError:
                    raise PositionMoved from None
            if events:
                self.projector.apply(conn, events)
        if events and self._commit_hooks:
            self.projector.committed(self._engine, events)


class _DecodedOnce:
    """Decodes each notification of a batch once, for every runner that handles it."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        self._mapper = mapper
        self._events: dict[int, Any] = {}

    def __call__(self, notification: Notification) -> Any:
        event = self._events.get(notification.id)
        if event is None:
            event = self._events[notification.id] = self._mapper.to_domain_event(notification)
        return event


def catch_up_together(
    runners: Sequence[ProjectionRunner],
    stop: threading.Event | None = None,
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Bring several projections of one log to its head, reading and decoding it once.

    Run one after another, each projection would read the whole log and
    decode every event it handles: for a read model built from scratch, most
    of the time goes there, several times over. Here each batch is read once
    from the lowest position among them, each event decoded at most once,
    and every runner applies the part past its own position in its own
    transaction, with its own position guard, as :meth:`ProjectionRunner.run_batch`
    would. Stops early when ``stop`` is set; ``on_batch`` is called after each batch.
    """
    if not runners:
        return
    first = runners[0]
    recorder, mapper = first._recorder, first._mapper
    batch_size = max(runner._batch_size for runner in runners)
    position = min(runner._start() for runner in runners)
    while stop is None or not stop.is_set():
        notifications = recorder.select_notifications(
            start=position, limit=batch_size, inclusive_of_start=False
        )
        if not notifications:
            return
        decode = _DecodedOnce(mapper)
        for runner in runners:
            runner.apply_read(position, notifications, decode)
        position = notifications[-1].id
        if on_batch is not None:
            on_batch()
