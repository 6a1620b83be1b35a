"""Follows the event log and feeds a projector, one transaction per batch.

The read-model writes of a batch and the position reached commit together, so
a runner killed at any instant resumes exactly where its last commit left it:
no event lost, none applied twice. The position update is also a guard: it
comes first in the batch's transaction and only succeeds from the position
the batch started at, so two runners of the same projection can never both
apply a batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
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


def move_position(conn: Connection, name: str, start: int, end: int, now: datetime) -> bool:
    """Move a projection's position from ``start`` to ``end``; False if it is not at ``start``."""
    moved = conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == name, projection_positions.c.position == start)
        .values(position=end, updated_at=now)
    ).rowcount
    return bool(moved == 1)


class Failures:
    """The consecutive failures of a follower of the log, and the back-off they call for.

    A database or storage outage must not kill a projector: it backs off
    exponentially (up to 30 s) and logs the trace once, not once a second.
    """

    def __init__(self, who: str) -> None:
        self._who = who
        self.count = 0
        self.retry_at = 0.0

    def failed(self, error: Exception) -> float:
        """Count a failure; return how many seconds to wait before the next try."""
        self.count += 1
        if self.count == 1:
            log.error("%s failed a batch; retrying", self._who, exc_info=error)
        else:
            log.warning(
                "%s failed again (%d): %s: %s", self._who, self.count, type(error).__name__, error
            )
        delay: float = min(30.0, 0.5 * 2.0 ** min(self.count, 6))
        self.retry_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        """The last try worked."""
        if self.count:
            log.info("%s recovered after %d failures", self._who, self.count)
        self.count = 0
        self.retry_at = 0.0


def follow(
    run_batch: Callable[[], int],
    failures: Failures,
    stop: threading.Event,
    wait: Callable[[], None],
    coalesce: float,
    on_batch: Callable[[], None] | None,
) -> None:
    """Run batches until ``stop`` is set; ``wait`` for a wake-up when one reads nothing.

    A batch starts at least ``coalesce`` seconds after the previous one, and
    ``on_batch`` is called after each batch that read events; a batch that
    raises is retried after the back-off ``failures`` calls for.
    """
    began = 0.0
    while not stop.is_set():
        try:
            if stop.wait(max(0.0, began + coalesce - time.monotonic())):
                break
            began = time.monotonic()
            if run_batch() == 0:
                wait()
            elif on_batch is not None:
                on_batch()
            failures.succeeded()
        except Exception as error:  # noqa: BLE001 - logged by Failures, then retried
            stop.wait(failures.failed(error))


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

    def _start(self) -> int:
        return self._committed if self._committed is not None else self.position()

    def _advance(self, start: int, notifications: Sequence[Notification], decode: Decode) -> None:
        if notifications:
            handled = [n for n in notifications if self.projector.handles(n.topic)]
            self._move(start, notifications[-1].id, [decode(n) for n in handled])
        else:
            self._committed = start

    def _move(self, start: int, end: int, events: Sequence[Any]) -> None:
        """Commit ``events`` and the position ``end``; after a lost race, forget the position."""
        self._committed = None
        try:
            self._commit(start, end, events)
        except PositionMoved:
            log.info("projection %s: another runner moved on; re-reading", self.name)
        else:
            self._committed = end

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
        follow(
            self.run_batch,
            Failures(f"projection {self.name}"),
            stop,
            lambda: wakeup.wait(idle_wait),
            coalesce,
            on_batch,
        )

    def _commit(self, start: int, end: int, events: Sequence[Any]) -> None:
        """Apply ``events`` and move the position from ``start`` to ``end``, in one transaction."""
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            # The guard first: a batch that another runner already applied fails
            # here, before any of its writes could collide with that runner's rows
            # (a duplicate key would be a failure, not a lost race); the row lock
            # also makes a concurrent runner of this projection wait for this batch.
            if not move_position(conn, self.name, start, end, now):
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


class PolicyRunner(ProjectionRunner):
    """Runs a policy: a follower of the log that no query waits for.

    A read model's position must move with every batch, so that a query
    waiting for a position gets there. Nobody waits for a policy's, so a
    batch with nothing for it is only remembered, and the position moves at
    most once every ``idle_commit_seconds`` (or at the head of the log once
    that long has passed, and at the end of :meth:`catch_up`): under a steady
    trickle of commands that spares a transaction per batch. A crash
    forgets what was only remembered; those events are read again, and
    there is still nothing in them for the policy.
    """

    def __init__(self, *args: Any, idle_commit_seconds: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_commit = idle_commit_seconds
        self._read_to = 0  # read past the committed position, nothing in it for us
        self._moved_at = time.monotonic()

    def run_batch(self) -> int:
        """Apply the next batch, or only remember it when it holds nothing for the policy."""
        start = self._start()
        notifications = self._recorder.select_notifications(
            start=max(start, self._read_to), limit=self._batch_size, inclusive_of_start=False
        )
        due = time.monotonic() - self._moved_at >= self._idle_commit
        if not notifications:
            if due:
                self._flush(start)
            return 0
        if not due and not any(self.projector.handles(n.topic) for n in notifications):
            self._read_to = notifications[-1].id
            return len(notifications)
        self._advance(start, notifications, self._mapper.to_domain_event)
        self._moved_at = time.monotonic()
        return len(notifications)

    def catch_up(self) -> int:
        """Apply batches until the log is exhausted, then commit the position reached."""
        while self.run_batch():
            pass
        self._flush(self._start())
        return self.position()

    def _flush(self, start: int) -> None:
        if self._read_to > start:
            self._move(start, self._read_to, [])
        self._moved_at = time.monotonic()


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


class ProjectionGroup:
    """Several projections of one log following it together, from one reader.

    Each projection alone reads the log and decodes what it handles for
    itself, and commits a transaction for every batch even when the batch
    held none of its events (its position must move all the same, or a query
    waiting for that position would wait for ever). Under a steady trickle of
    commands that fixed cost, times every projection, dominated: projecting
    one play cost several times what saving it did.

    Together, a batch is read once from the lowest of their positions and
    each event decoded at most once; a projection with events of its own in
    the batch applies the part past its own position in its own transaction,
    behind its own position guard, exactly as :meth:`ProjectionRunner.run_batch`
    would; the positions of those with none move together, in one
    transaction, each behind its own guard. Every projection due gets its
    batch each round: when some are a batch or more ahead of the lowest, the
    log is read again from theirs. A projection whose batch fails backs off
    on its own while the others go on. Within :meth:`catch_up` and
    :meth:`run` a round's transactions go side by side, one thread each.
    """

    def __init__(self, runners: Sequence[ProjectionRunner]) -> None:
        if not runners:
            raise ValueError("a group needs at least one runner")
        first = runners[0]
        same = (r._recorder is first._recorder and r._engine is first._engine for r in runners)
        if not all(same):
            raise ValueError("a group follows one log into one read-model database")
        self._runners = list(runners)
        self._recorder = first._recorder
        self._mapper = first._mapper
        self._engine = first._engine
        self._batch_size = max(r._batch_size for r in runners)
        self._failures = {r.name: Failures(f"projection {r.name}") for r in runners}
        self._pool: ThreadPoolExecutor | None = None

    def run_batch(self) -> int:
        """Give every projection due its next batch; return how many events were read."""
        now = time.monotonic()
        due = [r for r in self._runners if self._failures[r.name].retry_at <= now]
        starts = {r.name: r._start() for r in due}
        read = 0
        while due:
            position = min(starts[r.name] for r in due)
            notifications = self._recorder.select_notifications(
                start=position, limit=self._batch_size, inclusive_of_start=False
            )
            if not notifications:
                break
            read += len(notifications)
            end = notifications[-1].id
            self._apply([r for r in due if starts[r.name] < end], starts, notifications)
            if len(notifications) < self._batch_size:
                break  # the head of the log: nobody can be past it
            # Those already past this batch get theirs from a read of their own.
            due = [r for r in due if starts[r.name] >= end]
        return read

    def _apply(
        self,
        runners: Sequence[ProjectionRunner],
        starts: dict[str, int],
        notifications: Sequence[Notification],
    ) -> None:
        decode = _DecodedOnce(self._mapper)
        idle: list[ProjectionRunner] = []
        work: list[Callable[[], None]] = []
        for runner in runners:
            start = starts[runner.name]
            mine = [n for n in notifications if n.id > start]
            # A position's first batch inserts its row: the runner's own path.
            if start and not any(runner.projector.handles(n.topic) for n in mine):
                idle.append(runner)
            else:
                work.append(partial(self._advance, runner, start, mine, decode))
        if idle:
            work.append(partial(self._move_together, idle, starts, notifications[-1].id))
        if self._pool is None or len(work) < 2:
            for job in work:
                job()
            return
        # Side by side: their commits overlap, and together they hold their share of
        # the GIL in a process that also answers queries (one after the other, the
        # lag from command to query tripled under the freshness benchmark's load).
        futures = [self._pool.submit(job) for job in work[1:]]
        work[0]()
        for future in futures:
            future.result()

    def _advance(
        self, runner: ProjectionRunner, start: int, mine: Sequence[Notification], decode: Decode
    ) -> None:
        failures = self._failures[runner.name]
        try:
            runner._advance(start, mine, decode)
        except Exception as error:  # noqa: BLE001 - logged by Failures, then retried
            failures.failed(error)
        else:
            failures.succeeded()

    def _move_together(
        self, runners: Sequence[ProjectionRunner], starts: dict[str, int], end: int
    ) -> None:
        """Move the positions of projections with nothing to apply, in one transaction."""
        now = datetime.now(UTC)
        moved: list[tuple[ProjectionRunner, bool]] = []
        for runner in runners:
            runner._committed = None  # unknown until the commit is
        with self._engine.begin() as conn:
            for runner in runners:
                ok = move_position(conn, runner.name, starts[runner.name], end, now)
                moved.append((runner, ok))
        for runner, ok in moved:
            # Not moved: another runner of that projection got there first; read it again.
            runner._committed = end if ok else None

    def catch_up(
        self, stop: threading.Event | None = None, on_batch: Callable[[], None] | None = None
    ) -> None:
        """Bring every projection to the head of the log (or stop early when ``stop`` is set).

        ``on_batch`` is called after each round that read events. A
        projection that fails is left behind, backing off; the others go on.
        """
        with self._side_by_side():
            while stop is None or not stop.is_set():
                if not self.run_batch():
                    return
                if on_batch is not None:
                    on_batch()

    @contextlib.contextmanager
    def _side_by_side(self) -> Iterator[None]:
        """Threads for the projections' transactions of a round, while the block runs."""
        if self._engine.dialect.name == "sqlite":
            # One writer at a time there: side by side they only queued for the
            # database lock (a rebuild 20% slower, bench --quick --only replay).
            yield
            return
        with ThreadPoolExecutor(len(self._runners), thread_name_prefix="projection") as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def run(
        self,
        stop: threading.Event,
        wakeup: Wakeup,
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        """Follow the log until ``stop`` is set, as :meth:`ProjectionRunner.run` does alone."""
        with self._side_by_side():
            # A failure here is reading the log or moving the idle positions: the database.
            follow(
                self.run_batch,
                Failures("projections"),
                stop,
                lambda: wakeup.wait(self._idle_wait(idle_wait)),
                coalesce,
                on_batch,
            )

    def _idle_wait(self, idle_wait: float) -> float:
        """How long to wait for a wake-up: no later than a failed projection's next try."""
        retries = [f.retry_at for f in self._failures.values() if f.retry_at]
        if not retries:
            return idle_wait
        return max(0.0, min(idle_wait, min(retries) - time.monotonic()))
