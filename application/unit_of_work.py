"""One command's view of the event store, and the loops that commit it.

A command is a function ``decide(uow) -> value``: it loads aggregates through
the unit of work, calls their methods, and returns a plain value. A runner
then appends every new event of that command in one ``save`` (one
transaction). When another writer got to one of the aggregates first, the
store refuses the whole save; the runner then replays the command on fresh
state, a bounded number of times, so that concurrent requests do not fail
because of each other.

Two runners share that contract. :class:`CommandRunner` saves each command
on its own. :class:`GroupCommitRunner` gathers the commands that arrive
while a save is in flight and commits them together in one transaction
(group commit): the event store then pays its per-transaction costs (a
table lock and a NOTIFY on PostgreSQL, a sync on SQLite) once per batch
instead of once per command.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import InterfaceError, OperationalError, RecordConflictError

from application.errors import Contention, NotFound
from domain.claims import UniqueClaim

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What a command returned, and the log position reached by its events."""

    value: T
    position: int


@dataclass
class _BatchState:
    """The aggregates of one batch, shared by the commands decided in it, in order.

    ``loaded`` keeps the version each aggregate had when read from the store
    (absent for aggregates created in the batch) and ``history`` the events
    the batch's successful commands gave it, so that the state left by a
    command that failed half-way can be rebuilt without copying aggregates
    on the success path.
    """

    aggregates: dict[UUID, Aggregate] = field(default_factory=dict)
    loaded: dict[UUID, int] = field(default_factory=dict)
    history: dict[UUID, list[Any]] = field(default_factory=dict)
    # Aggregates as this runner's last batches left them (None: read the store).
    recent: _Recent | None = None


class _Recent:
    """The aggregates the last batches wrote, as they committed them (a bounded LRU).

    Commands rehearsed while an earlier batch was in flight read its
    aggregates before that batch committed; seeding the next batch from here
    instead spares it a certain conflict on aggregates many commands write.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[UUID, Aggregate] = OrderedDict()

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """The committed aggregate, if it was written lately."""
        return self._items.get(aggregate_id)

    def put(self, aggregate: Aggregate) -> None:
        """Remember ``aggregate`` as committed (it must not be changed afterwards)."""
        self._items[aggregate.id] = aggregate
        self._items.move_to_end(aggregate.id)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (after a conflict: another writer is about)."""
        self._items.clear()


class UnitOfWork:
    """The aggregates one command reads and changes, each loaded once."""

    def __init__(
        self,
        app: Application[UUID],
        batch: _BatchState | None = None,
        preloaded: dict[UUID, Aggregate | None] | None = None,
    ) -> None:
        self._app = app
        self._batch = batch
        self._preloaded = preloaded
        self._aggregates: dict[UUID, Aggregate] = batch.aggregates if batch is not None else {}
        # In a batch: what this command touched, and what its add() displaced,
        # so that a failure can be undone and its events told apart.
        self._touched: dict[UUID, None] = {}
        self._displaced: dict[UUID, Aggregate | None] = {}

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate, or None if it was never created or is of another type."""
        found = self._aggregates.get(aggregate_id)
        if found is None:
            found = self._load(aggregate_id)
            if found is None:
                return None
            self._aggregates[aggregate_id] = found
            if self._batch is not None:
                self._batch.loaded[aggregate_id] = found.version
        self._touched[aggregate_id] = None
        return found if isinstance(found, cls) else None

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate from the store, or from the command's rehearsal when it had one."""
        if self._preloaded is not None and aggregate_id in self._preloaded:
            # Read by the caller's thread just before queueing; handed over once.
            found = self._preloaded.pop(aggregate_id)
            if self._batch is not None and self._batch.recent is not None:
                recent = self._batch.recent.get(aggregate_id)
                if recent is not None and (found is None or recent.version > found.version):
                    return deepcopy(recent)
            return found
        try:
            found = self._app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found

    def get(self, cls: type[A], aggregate_id: UUID, what: str = "resource") -> A:
        """The aggregate; :class:`NotFound` if it does not exist."""
        found = self.find(cls, aggregate_id)
        if found is None:
            raise NotFound(f"{what} not found")
        return found

    def add(self, aggregate: A) -> A:
        """A new aggregate, to be saved with the command."""
        if aggregate.id not in self._displaced:
            self._displaced[aggregate.id] = self._aggregates.get(aggregate.id)
        self._aggregates[aggregate.id] = aggregate
        self._touched[aggregate.id] = None
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
        if self._batch is None:
            for aggregate in self._aggregates.values():
                events.extend(aggregate.collect_events())
            return events
        # In a batch, only this command's aggregates can hold pending events:
        # the commands before it had theirs collected right after deciding.
        for aggregate_id in self._touched:
            new = self._aggregates[aggregate_id].collect_events()
            if new:
                events.extend(new)
                self._batch.history.setdefault(aggregate_id, []).extend(new)
        return events

    def undo(self) -> None:
        """Put the batch back as it was before this command (which raised).

        An aggregate the command changed is rebuilt from its version in the
        store plus the events the batch's earlier commands gave it; one the
        command created is dropped.
        """
        batch = self._batch
        if batch is None:
            return
        for aggregate_id, previous in self._displaced.items():
            if previous is None:
                self._aggregates.pop(aggregate_id, None)
            else:
                self._aggregates[aggregate_id] = previous
        for aggregate_id in self._touched:
            current = self._aggregates.get(aggregate_id)
            if current is not None and current.pending_events:
                self._rebuild(batch, aggregate_id)

    def _rebuild(self, batch: _BatchState, aggregate_id: UUID) -> None:
        history = batch.history.get(aggregate_id, [])
        version = batch.loaded.get(aggregate_id)
        if not history:
            # Nothing of the batch's own on it: the store's state is the state.
            self._aggregates.pop(aggregate_id, None)
            batch.loaded.pop(aggregate_id, None)
            return
        rebuilt: Any = (
            None if version is None else self._app.repository.get(aggregate_id, version=version)
        )
        for domain_event in history:
            rebuilt = domain_event.mutate(rebuilt)
        self._aggregates[aggregate_id] = rebuilt


class _Rehearsal(UnitOfWork):
    """Runs a command once in its caller's thread, only to read what it needs.

    The store is read there, in parallel with the other callers, and an
    untouched copy of each aggregate is kept for the committer, which then
    decides for real without waiting on the database. A command that would
    fail is not told here: only its decision in the batch counts.
    """

    def __init__(self, app: Application[UUID]) -> None:
        super().__init__(app)
        self.read: dict[UUID, Aggregate | None] = {}

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        found = super()._load(aggregate_id)
        self.read[aggregate_id] = None if found is None else deepcopy(found)
        return found


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

    def close(self) -> None:
        """Release what the runner holds (nothing for this one)."""


class _Pending:
    """A command waiting in the group-commit queue, and what its caller waits on."""

    __slots__ = ("conflicts", "decide", "future", "preloaded")

    def __init__(
        self,
        decide: Callable[[UnitOfWork], Any],
        preloaded: dict[UUID, Aggregate | None] | None,
    ) -> None:
        self.decide = decide
        self.preloaded = preloaded
        self.future: Future[Committed[Any]] = Future()
        self.conflicts = 0


@dataclass
class _Outcome:
    """What one command of a batch decided: a value or an error, and its events."""

    pending: _Pending
    value: Any = None
    error: BaseException | None = None
    events: list[DomainEventProtocol[Any]] = field(default_factory=list)


class _Conflict(Exception):
    """The batch's save was refused: some command in it lost a race."""


class GroupCommitRunner(CommandRunner):
    """Commits the commands of concurrent callers together, one transaction per batch.

    Callers block in :meth:`run` (or await :meth:`submit`'s future) while one
    committer thread takes every command waiting at that moment (up to
    ``max_batch``), decides them one after the other on one shared set of
    aggregates (so commands on the same aggregate see each other, in order),
    and appends all their events in one ``save``.

    :meth:`run` first rehearses the command in the caller's thread: the reads
    it needs happen there, in parallel, and the committer decides on those
    copies (or on the state its own last batches committed, when newer)
    without waiting on the database. Stale copies cannot slip through: the
    store refuses a save over a version it does not hold, and every retry
    after a refusal reads the store afresh. Guarantees:

    * nobody hears of success, nor of a failure decided on the batch's state,
      before the batch's save has returned;
    * a command whose ``decide`` raises gets its own error and leaves the
      batch as it found it;
    * a refused save (another writer changed one of the aggregates) is split
      in halves, each decided again on fresh state, until the command that
      lost the race is alone; it alone then retries, with the same bound as
      :class:`CommandRunner`;
    * each command's position is the highest log position of its own events
      (of the whole batch for a command that changed nothing).
    """

    def __init__(
        self,
        app: Application[UUID],
        attempts: int,
        on_commit: Callable[[int], None] | None = None,
        *,
        max_batch: int = 64,
        idle_exit_seconds: float = 2.0,
    ) -> None:
        super().__init__(app, attempts, on_commit)
        self._max_batch = max(1, max_batch)
        self._idle_exit = idle_exit_seconds
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._recent = _Recent()
        self.batches = 0
        self.commands = 0

    def run(self, decide: Callable[[UnitOfWork], T]) -> Committed[T]:
        """Rehearse the command here, queue it, return its outcome once its batch is durable."""
        rehearsal = _Rehearsal(self._app)
        with contextlib.suppress(Exception):
            decide(rehearsal)
        result: Committed[T] = self._queue_command(decide, rehearsal.read).result()
        return result

    def submit(self, decide: Callable[[UnitOfWork], T]) -> Future[Committed[T]]:
        """Queue the command; the future resolves once its batch is durable.

        For callers that must not block (an event loop): the committer then
        reads what the command needs itself.
        """
        return self._queue_command(decide, None)

    def _queue_command(
        self, decide: Callable[[UnitOfWork], T], preloaded: dict[UUID, Aggregate | None] | None
    ) -> Future[Committed[T]]:
        pending = _Pending(decide, preloaded)
        with self._lock:
            if self._closed:
                raise RuntimeError("the command runner is closed")
            self._queue.append(pending)
            if self._thread is None:
                # The committer exits when idle: no thread outlives its use.
                self._thread = threading.Thread(
                    target=self._commit_loop, name="group-commit", daemon=True
                )
                self._thread.start()
            else:
                self._wake.notify()
        return pending.future

    def close(self) -> None:
        """Refuse new commands and wait for the queued ones to be committed."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake.notify()
        if thread is not None:
            thread.join(timeout=30)

    def _commit_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    idle = self._closed or not self._wake.wait(self._idle_exit)
                    if idle and not self._queue:
                        self._thread = None
                        return
                count = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
            try:
                self._commit(batch)
            except BaseException as error:  # handed to every caller
                log.exception("group commit failed")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)

    def _commit(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.commands += len(batch)
        # Groups still to commit, the next one last; halves of a refused group
        # go back in order, so commands keep their arrival order in the log.
        groups: list[list[_Pending]] = [batch]
        while groups:
            group = groups.pop()
            try:
                self._commit_group(group)
            except _Conflict:
                # From now on, decide on what the store holds.
                self._recent.clear()
                for pending in group:
                    pending.preloaded = None
                if len(group) > 1:
                    middle = len(group) // 2
                    groups.append(group[middle:])
                    groups.append(group[:middle])
                    continue
                pending = group[0]
                pending.conflicts += 1
                if pending.conflicts >= self._attempts:
                    pending.future.set_exception(
                        Contention("too many concurrent changes to the same thing; try again")
                    )
                    continue
                if pending.conflicts > 1:
                    # Another writer keeps winning: give it a moment.
                    time.sleep(random.uniform(0, 0.001 * pending.conflicts))  # noqa: S311
                groups.append(group)

    def _commit_group(self, group: Sequence[_Pending]) -> None:
        batch = _BatchState(recent=self._recent)
        outcomes: list[_Outcome] = []
        for pending in group:
            uow = UnitOfWork(self._app, batch, pending.preloaded)
            try:
                value = pending.decide(uow)
            except Exception as error:  # noqa: BLE001 - it is this command's answer
                uow.undo()
                outcomes.append(_Outcome(pending, error=error))
                continue
            outcomes.append(_Outcome(pending, value=value, events=uow.collect_events()))
        events = [e for outcome in outcomes for e in outcome.events]
        if not events:
            head = self.head()
            for outcome in outcomes:
                self._resolve(outcome, head)
            return
        try:
            recordings = self._app.save(*events)
        except RecordConflictError:
            raise _Conflict from None
        except (OperationalError, InterfaceError) as error:
            # The store is unreachable: no command of the batch could be saved.
            for outcome in outcomes:
                outcome.pending.future.set_exception(error)
            return
        except Exception as error:
            if len(group) > 1:
                # Some event could not be stored (encoding...): find whose.
                raise _Conflict from error
            group[0].future.set_exception(error)
            return
        batch_position = max(r.notification.id for r in recordings)
        for aggregate_id in batch.history:
            written = batch.aggregates.get(aggregate_id)
            if written is not None:
                self._recent.put(written)
        if self._on_commit is not None:
            self._on_commit(batch_position)
        index = 0
        for outcome in outcomes:
            count = len(outcome.events)
            if count:
                position = max(r.notification.id for r in recordings[index : index + count])
                index += count
            else:
                position = batch_position
            self._resolve(outcome, position)

    @staticmethod
    def _resolve(outcome: _Outcome, position: int) -> None:
        if outcome.error is not None:
            outcome.pending.future.set_exception(outcome.error)
        else:
            outcome.pending.future.set_result(Committed(outcome.value, position))
