"""One command's view of the event store, and the loops that commit it.

A command is a function ``decide(uow) -> value``: it loads aggregates through
the unit of work, calls their methods, and returns a plain value. A runner
then appends every new event of that command in one ``save`` (one
transaction). When another writer got to one of the aggregates first, the
store refuses the whole save; the runner then replays the command on fresh
state, a bounded number of times, so that concurrent requests do not fail
because of each other.

Both runners serve blocking callers (:meth:`CommandRunner.run`) and callers
on an event loop (:meth:`CommandRunner.run_async`), which must not block.

Two runners share that contract. :class:`CommandRunner` saves each command
on its own. :class:`GroupCommitRunner` gathers the commands that arrive
while a save is in flight and commits them together in one transaction
(group commit): the event store then pays its per-transaction costs (a
table lock and a NOTIFY on PostgreSQL, a sync on SQLite) once per batch
instead of once per command, and reads the aggregates of the whole batch in
one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    RecordConflictError,
    Recording,
)

from application.errors import Contention, NotFound
from application.ports import AggregateHistories, AwaitedEventStore
from domain.claims import UniqueClaim

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What a command returned, and the log position reached by its events."""

    value: T
    position: int


Read = Callable[[Collection[UUID]], dict[UUID, Aggregate | None]]


@dataclass
class _BatchState:
    """The aggregates of one batch, shared by the commands decided in it, in order.

    ``preloaded`` holds what the batch's commands said they would read, read
    in one go before deciding, and ``read`` reads anything else. ``loaded``
    keeps the version each aggregate had when read (absent for aggregates
    created in the batch) and ``history`` the events the batch's successful
    commands gave it, so that the state left by a command that failed
    half-way can be rebuilt without copying aggregates on the success path.
    """

    read: Read
    preloaded: dict[UUID, Aggregate | None] = field(default_factory=dict)
    aggregates: dict[UUID, Aggregate] = field(default_factory=dict)
    loaded: dict[UUID, int] = field(default_factory=dict)
    history: dict[UUID, list[Any]] = field(default_factory=dict)

    def load(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as the store holds it; a preloaded one is handed out once."""
        if aggregate_id in self.preloaded:
            return self.preloaded.pop(aggregate_id)
        return self.read((aggregate_id,))[aggregate_id]

    def settled(self) -> Iterable[Aggregate]:
        """Every aggregate of the batch, as it stands once the batch is saved."""
        yield from self.aggregates.values()
        yield from (a for a in self.preloaded.values() if a is not None)


class _Committed:
    """Aggregates as committed by the last batches, owned by the committer (a bounded LRU).

    A batch takes its aggregates out and decides on them in place; only a
    saved batch puts them back, so a failed one leaves nothing half-changed
    here. An aggregate kept here is fast-forwarded with the events other
    writers appended since, never trusted as it is.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._items: OrderedDict[UUID, Aggregate] = OrderedDict()

    def take(self, aggregate_id: UUID) -> Aggregate | None:
        """Remove and return the aggregate, if kept."""
        return self._items.pop(aggregate_id, None)

    def put(self, aggregate: Aggregate) -> None:
        """Keep ``aggregate``, as committed."""
        self._items[aggregate.id] = aggregate
        self._items.move_to_end(aggregate.id)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class UnitOfWork:
    """The aggregates one command reads and changes, each loaded once."""

    def __init__(self, app: Application[UUID], batch: _BatchState | None = None) -> None:
        self._app = app
        self._batch = batch
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
        """The aggregate from the store (through the batch, in a batch)."""
        if self._batch is not None:
            return self._batch.load(aggregate_id)
        try:
            found: Aggregate = self._app.repository.get(aggregate_id)
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
    """Runs a command once in its caller's thread, only to learn what it reads.

    For commands that do not say up front which aggregates they read: the
    committer then reads those with the rest of the batch. A command that
    would fail is not told here: only its decision in the batch counts.
    """

    def __init__(self, app: Application[UUID]) -> None:
        super().__init__(app)
        self.read: dict[UUID, None] = {}

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        self.read[aggregate_id] = None
        return super()._load(aggregate_id)


class CommandRunner:
    """Runs commands against one event-sourced application, retrying lost races."""

    # Threads in which run_async's callers wait for their save (as many as
    # the ASGI server's own pool for blocking endpoints).
    async_threads = 40

    def __init__(
        self,
        app: Application[UUID],
        attempts: int,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._app = app
        self._attempts = max(1, attempts)
        self._on_commit = on_commit
        self._threads: ThreadPoolExecutor | None = None
        self._threads_lock = threading.Lock()

    @property
    def app(self) -> Application[UUID]:
        """The application whose event store the commands write to."""
        return self._app

    def _append(self, events: Sequence[DomainEventProtocol[Any]]) -> list[Recording[UUID]]:
        """Append ``events`` in one transaction; a lost race raises RecordConflictError.

        What ``Application.save(*events)`` does when given events (no aggregate
        to cache or snapshot), without its runtime Protocol check of each one
        (~8 us an event, measured: a twentieth of the committer's CPU).
        """
        return self._app.events.put(events)

    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self._app.recorder.max_notification_id() or 0

    def run(
        self, decide: Callable[[UnitOfWork], T], reads: Iterable[UUID] | None = None
    ) -> Committed[T]:
        """Decide on fresh state and save; on a write conflict, decide again.

        ``reads`` names the aggregates ``decide`` will read, when known; this
        runner reads each when asked and needs no such hint.
        """
        for attempt in range(self._attempts):
            uow = UnitOfWork(self._app)
            value = decide(uow)
            events = uow.collect_events()
            if not events:
                return Committed(value, self.head())
            try:
                recordings = self._append(events)
            except RecordConflictError:
                # Jitter spreads out the retries of writers that collided.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311
                continue
            position = max(r.notification.id for r in recordings)
            if self._on_commit is not None:
                self._on_commit(position)
            return Committed(value, position)
        raise Contention("too many concurrent changes to the same thing; try again")

    async def run_async(
        self, decide: Callable[[UnitOfWork], T], reads: Iterable[UUID] | None = None
    ) -> Committed[T]:
        """:meth:`run`, awaited: the save blocks one of the runner's threads, not the loop."""
        with self._threads_lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.async_threads, "command")
            threads = self._threads
        return await asyncio.wrap_future(threads.submit(self.run, decide, reads))

    async def drain(self) -> None:
        """Wait until the commands queued on the running loop are committed (none here)."""

    def close(self) -> None:
        """Wait for the commands in flight and release the runner's threads."""
        with self._threads_lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)


class _Pending:
    """A command waiting in the group-commit queue, and what its caller waits on.

    A blocking caller waits on a thread future; a caller on an event loop
    awaits a future of its loop, which only that loop's thread may settle
    (see :class:`_Answers`).
    """

    __slots__ = ("conflicts", "decide", "future", "loop", "reads")

    def __init__(
        self,
        decide: Callable[[UnitOfWork], Any],
        reads: Iterable[UUID],
        awaited: asyncio.Future[Committed[Any]] | None = None,
    ) -> None:
        self.decide = decide
        # Read again by every retry of its batch: a one-shot iterator would not do.
        self.reads = tuple(reads)
        self.future: Future[Committed[Any]] | asyncio.Future[Committed[Any]]
        self.loop: asyncio.AbstractEventLoop | None
        if awaited is None:
            self.future, self.loop = Future(), None
            # Queued is committed: a caller that stops waiting cannot cancel it.
            self.future.set_running_or_notify_cancel()
        else:
            # Cancelling this one only stops its caller waiting (the answer is dropped).
            self.future, self.loop = awaited, awaited.get_loop()
        self.conflicts = 0


class _Answers:
    """The answers of one batch, handed to their callers once it is over.

    Thread futures are settled at once. The futures of callers on an event
    loop are settled by one callback per loop for the whole batch: one
    cross-thread wake-up of the loop instead of one per caller, which was a
    tenth of the command service's CPU per command (profiled).
    """

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Any, Any]]] = {}
        self._answered: set[_Pending] = set()

    def succeed(self, pending: _Pending, committed: Committed[Any]) -> None:
        """``pending`` is durable: its caller gets ``committed``."""
        self._answered.add(pending)
        if pending.loop is None:
            cast(Future[Committed[Any]], pending.future).set_result(committed)
        else:
            self._by_loop.setdefault(pending.loop, []).append((pending, committed, None))

    def fail(self, pending: _Pending, error: BaseException) -> None:
        """``pending`` failed: its caller gets ``error`` raised."""
        self._answered.add(pending)
        if pending.loop is None:
            pending.future.set_exception(error)
        else:
            self._by_loop.setdefault(pending.loop, []).append((pending, None, error))

    def fail_unanswered(self, batch: Iterable[_Pending], error: BaseException) -> None:
        """Every command of ``batch`` not answered yet failed with ``error``."""
        for pending in batch:
            if pending not in self._answered:
                self.fail(pending, error)

    def send(self, current: asyncio.AbstractEventLoop | None = None) -> None:
        """Settle the callers' futures: at once on ``current`` (the loop running this),
        with one wake-up of each other loop."""
        by_loop, self._by_loop = self._by_loop, {}
        for loop, answers in by_loop.items():
            if loop is current:
                _settle(answers)
                continue
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, answers)


def _settle(answers: list[tuple[_Pending, Any, Any]]) -> None:
    for pending, committed, error in answers:
        future = pending.future
        if future.done():  # its caller stopped waiting
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(committed)


@dataclass
class _Outcome:
    """What one command of a batch decided: a value or an error, and its events."""

    pending: _Pending
    value: Any = None
    error: BaseException | None = None
    events: list[DomainEventProtocol[Any]] = field(default_factory=list)


class _Conflict(Exception):
    """The batch's save was refused: some command in it lost a race."""


# What a batch asks of the event store, one request at a time (see _Steps).


@dataclass(frozen=True)
class _ReadHistories:
    """The stored events of each aggregate after the version given (-> stored events)."""

    versions: dict[UUID, int]


@dataclass(frozen=True)
class _Append:
    """Append the events in one transaction (-> their positions, in order)."""

    events: list[DomainEventProtocol[Any]]


@dataclass(frozen=True)
class _Head:
    """The position of the last event in the log (-> int)."""


@dataclass(frozen=True)
class _Pause:
    """Wait a moment before trying again (-> None)."""

    seconds: float


_Request = _ReadHistories | _Append | _Head | _Pause
_Steps = Generator[_Request, Any, T]
"""A batch's work as a generator of event-store requests: the same steps run by
the committer thread, blocking, and by a task on the callers' event loop,
awaiting (the answer to a request is sent back in, its error thrown in)."""


@contextlib.contextmanager
def _answering(
    batch: list[_Pending], loop: asyncio.AbstractEventLoop | None = None
) -> Iterator[_Answers]:
    """The answers of ``batch``, sent once it is over (at once on ``loop``, the one running).

    What escapes the batch is every unanswered caller's answer; an exception
    that is not an error (a cancellation...) is raised on after that.
    """
    answers = _Answers()
    try:
        yield answers
    except BaseException as error:  # handed to every caller
        log.exception("group commit failed")
        answers.fail_unanswered(batch, error)
        if not isinstance(error, Exception):
            raise
    finally:
        answers.send(loop)


def _advance(steps: _Steps[Any], answer: Any, error: Exception | None) -> tuple[bool, Any]:
    """Hand ``steps`` the last request's answer (or throw its error in).

    ``(False, next request)``, or ``(True, what the steps returned)`` once done.
    """
    try:
        return False, steps.send(answer) if error is None else steps.throw(error)
    except StopIteration as done:
        return True, done.value


class _LoopCommitter:
    """The queue and the committing task of one event loop's callers."""

    def __init__(self) -> None:
        self.queue: deque[_Pending] = deque()
        self.task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        # Its own: the thread committer's is touched from another thread.
        self.committed = _Committed()


class GroupCommitRunner(CommandRunner):
    """Commits the commands of concurrent callers together, one transaction per batch.

    Callers block in :meth:`run` (or await :meth:`submit`'s future) while one
    committer thread takes every command waiting at that moment (up to
    ``max_batch``), decides them one after the other on one shared set of
    aggregates (so commands on the same aggregate see each other, in order),
    and appends all their events in one ``save``.

    Before deciding, the committer reads every aggregate the batch's
    commands will read in one query: the ones its last batches committed
    are kept in memory and only fast-forwarded with what other writers
    appended since. A command names its reads up front (``reads``), or
    :meth:`run` rehearses it in the caller's thread to find them. A read
    that was not named is made when asked. Another writer can still move an
    aggregate between that read and the save: the store then refuses the
    save, and the retry reads afresh. Guarantees:

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
        if not isinstance(app.recorder, AggregateHistories):
            raise TypeError(f"{type(app.recorder).__name__} cannot read many aggregates at once")
        self._histories: AggregateHistories = app.recorder
        # Callers on an event loop are committed by a task on that loop when the
        # store can be awaited there (PostgreSQL), by the committer thread otherwise.
        self._awaited = app.recorder if isinstance(app.recorder, AwaitedEventStore) else None
        self._loop_committers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _LoopCommitter
        ] = weakref.WeakKeyDictionary()
        self._max_batch = max(1, max_batch)
        self._idle_exit = idle_exit_seconds
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Told whenever the committer thread has nothing queued nor in hand.
        self._quiet = threading.Condition(self._lock)
        self._committing = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._committed = _Committed()
        self.batches = 0
        self.commands = 0

    def run(
        self, decide: Callable[[UnitOfWork], T], reads: Iterable[UUID] | None = None
    ) -> Committed[T]:
        """Queue the command, return its outcome once its batch is durable.

        Without ``reads``, the command is rehearsed here first to find them.
        """
        if reads is None:
            rehearsal = _Rehearsal(self._app)
            with contextlib.suppress(Exception):
                decide(rehearsal)
            reads = rehearsal.read
        result: Committed[T] = self.submit(decide, reads).result()
        return result

    async def run_async(
        self, decide: Callable[[UnitOfWork], T], reads: Iterable[UUID] | None = None
    ) -> Committed[T]:
        """Queue the command and await its batch, without tying up a thread.

        No rehearsal here (its reads would block the loop): reads not named
        are made by the committer when the command asks for them.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Committed[T]] = loop.create_future()
        pending = _Pending(decide, () if reads is None else reads, answer)
        if self._awaited is None:
            self._enqueue(pending)
        else:
            self._enqueue_on_loop(loop, pending)
        return await answer

    def submit(
        self, decide: Callable[[UnitOfWork], T], reads: Iterable[UUID] = ()
    ) -> Future[Committed[T]]:
        """Queue the command; the future resolves once its batch is durable."""
        pending = _Pending(decide, reads)
        self._enqueue(pending)
        return cast(Future[Committed[T]], pending.future)

    def _enqueue(self, pending: _Pending) -> None:
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

    def close(self) -> None:
        """Refuse new commands and wait for the queued ones to be committed.

        Commands still queued for an event loop's committer whose task is gone
        (its loop stopped before they were taken: await :meth:`drain` first)
        are committed here; one still running keeps its own.
        """
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake.notify()
        if thread is not None:
            thread.join(timeout=30)
        for committer in list(self._loop_committers.values()):
            while committer.task is None and committer.queue:
                self._commit_here(self._take(committer.queue), committer.committed)
        super().close()

    def _take(self, queue: deque[_Pending]) -> list[_Pending]:
        """The next batch: what is queued, up to the batch size, in order."""
        return [queue.popleft() for _ in range(min(len(queue), self._max_batch))]

    def _commit_here(self, batch: list[_Pending], committed: _Committed) -> None:
        """Commit ``batch`` in this thread, blocking; every caller hears how it went."""
        with _answering(batch) as answers:
            self._drive(self._commit(batch, answers, committed))

    def _commit_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    self._committing = False
                    if not self._queue:
                        self._quiet.notify_all()
                    while not self._queue:
                        idle = self._closed or not self._wake.wait(self._idle_exit)
                        if idle and not self._queue:
                            self._thread = None
                            return
                    batch = self._take(self._queue)
                    self._committing = True
                self._commit_here(batch, self._committed)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    # Ended by something no command raised: the next command starts another.
                    self._thread, self._committing = None, False
                    self._quiet.notify_all()

    def _wait_until_quiet(self) -> None:
        with self._lock:
            while self._queue or self._committing:
                self._quiet.wait()

    # -- the event loop's committer ------------------------------------------

    def _enqueue_on_loop(self, loop: asyncio.AbstractEventLoop, pending: _Pending) -> None:
        committer = self._loop_committers.get(loop)
        if committer is None:
            committer = self._loop_committers[loop] = _LoopCommitter()
        if self._closed:
            raise RuntimeError("the command runner is closed")
        committer.queue.append(pending)
        if committer.task is None:
            committer.task = loop.create_task(self._loop_commit(committer, loop))

    async def _loop_commit(
        self, committer: _LoopCommitter, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Commit what this loop's callers queue, batch after batch, until none is left.

        While a batch awaits the store, the loop goes on serving requests, whose
        commands queue up for the next batch.
        """
        try:
            while committer.queue:
                batch = self._take(committer.queue)
                with _answering(batch, loop) as answers:
                    await self._drive_async(self._commit(batch, answers, committer.committed))
        finally:
            committer.task = None
            committer.idle.set()

    async def drain(self) -> None:
        """Wait until the commands queued by the running loop's callers are committed."""
        if self._awaited is None:
            # They went to the committer thread (with everyone else's).
            await asyncio.to_thread(self._wait_until_quiet)
            return
        committer = self._loop_committers.get(asyncio.get_running_loop())
        while committer is not None and committer.task is not None:
            committer.idle.clear()
            await committer.idle.wait()

    # -- running the steps ---------------------------------------------------

    def _drive(self, steps: _Steps[T]) -> T:
        """Run ``steps``, blocking on each request to the store."""
        answer: Any = None
        error: Exception | None = None
        while True:
            done, request = _advance(steps, answer, error)
            if done:
                return cast(T, request)
            try:
                answer, error = self._perform(request), None
            except Exception as failure:  # noqa: BLE001 - thrown into the steps
                answer, error = None, failure

    async def _drive_async(self, steps: _Steps[T]) -> T:
        """Run ``steps``, awaiting each request to the store on the running loop."""
        answer: Any = None
        error: Exception | None = None
        while True:
            done, request = _advance(steps, answer, error)
            if done:
                return cast(T, request)
            try:
                answer, error = await self._perform_async(request), None
            except Exception as failure:  # noqa: BLE001 - thrown into the steps
                answer, error = None, failure

    def _perform(self, request: _Request) -> Any:
        if isinstance(request, _ReadHistories):
            return self._histories.select_events_after(request.versions)
        if isinstance(request, _Append):
            return [r.notification.id for r in self._append(request.events)]
        if isinstance(request, _Head):
            return self.head()
        time.sleep(request.seconds)
        return None

    async def _perform_async(self, request: _Request) -> Any:
        store = self._awaited
        assert store is not None
        if isinstance(request, _ReadHistories):
            return await store.select_events_after_async(request.versions)
        if isinstance(request, _Append):
            to_stored_event = self._app.mapper.to_stored_event
            return await store.insert_events_async([to_stored_event(e) for e in request.events])
        if isinstance(request, _Head):
            return await store.max_notification_id_async()
        await asyncio.sleep(request.seconds)
        return None

    # -- a batch, as steps ---------------------------------------------------

    def _commit(
        self, batch: list[_Pending], answers: _Answers, committed: _Committed
    ) -> _Steps[None]:
        self.batches += 1
        self.commands += len(batch)
        # Groups still to commit, the next one last; halves of a refused group
        # go back in order, so commands keep their arrival order in the log.
        groups: list[list[_Pending]] = [batch]
        while groups:
            group = groups.pop()
            try:
                yield from self._commit_group(group, answers, committed)
            except _Conflict:
                if len(group) > 1:
                    middle = len(group) // 2
                    groups.append(group[middle:])
                    groups.append(group[:middle])
                    continue
                pending = group[0]
                pending.conflicts += 1
                if pending.conflicts >= self._attempts:
                    answers.fail(
                        pending,
                        Contention("too many concurrent changes to the same thing; try again"),
                    )
                    continue
                if pending.conflicts > 1:
                    # Another writer keeps winning: give it a moment.
                    yield _Pause(random.uniform(0, 0.001 * pending.conflicts))  # noqa: S311
                groups.append(group)

    def _read(
        self, aggregate_ids: Collection[UUID], committed: _Committed
    ) -> _Steps[dict[UUID, Aggregate | None]]:
        """The aggregates as the store holds them now (None: never created), in one query.

        Kept ones are taken out of ``committed`` and fast-forwarded.
        """
        found: dict[UUID, Aggregate | None] = {}
        versions: dict[UUID, int] = {}
        for aggregate_id in aggregate_ids:
            kept = committed.take(aggregate_id)
            found[aggregate_id] = kept
            versions[aggregate_id] = 0 if kept is None else kept.version
        to_domain_event = self._app.mapper.to_domain_event
        stored_events = yield _ReadHistories(versions)
        for stored in stored_events:
            originator_id = cast(UUID, stored.originator_id)
            event = cast(Aggregate.Event, to_domain_event(stored))
            found[originator_id] = event.mutate(found[originator_id])
        return found

    def _commit_group(
        self, group: Sequence[_Pending], answers: _Answers, committed: _Committed
    ) -> _Steps[None]:
        # A read a command makes without having named it blocks its committer,
        # even the event loop's: such reads are rare (the hot commands name theirs).
        batch = _BatchState(lambda ids: self._drive(self._read(ids, committed)))
        reads = dict.fromkeys(r for pending in group for r in pending.reads)
        if reads:
            try:
                batch.preloaded = yield from self._read(reads, committed)
            except (OperationalError, InterfaceError) as error:
                # The store is unreachable: no command of the batch could be decided.
                for pending in group:
                    answers.fail(pending, error)
                return
            except Exception:
                # Some aggregate cannot be read (an event that no longer decodes...):
                # the commands then read on demand, and only those that need it fail.
                log.debug("the batch's reads failed; reading per command", exc_info=True)
        outcomes: list[_Outcome] = []
        for pending in group:
            uow = UnitOfWork(self._app, batch)
            try:
                value = pending.decide(uow)
            except Exception as error:  # noqa: BLE001 - it is this command's answer
                uow.undo()
                outcomes.append(_Outcome(pending, error=error))
                continue
            outcomes.append(_Outcome(pending, value=value, events=uow.collect_events()))
        events = [e for outcome in outcomes for e in outcome.events]
        if not events:
            head = yield _Head()
            for outcome in outcomes:
                self._answer(answers, outcome, head)
            return
        try:
            positions: list[int] = yield _Append(events)
        except RecordConflictError:
            raise _Conflict from None
        except (OperationalError, InterfaceError) as error:
            # The store is unreachable: no command of the batch could be saved.
            for outcome in outcomes:
                answers.fail(outcome.pending, error)
            return
        except Exception as error:
            if len(group) > 1:
                # Some event could not be stored (encoding...): find whose.
                raise _Conflict from error
            answers.fail(group[0], error)
            return
        batch_position = max(positions)
        for aggregate in batch.settled():
            committed.put(aggregate)
        if self._on_commit is not None:
            self._on_commit(batch_position)
        index = 0
        for outcome in outcomes:
            count = len(outcome.events)
            if count:
                position = max(positions[index : index + count])
                index += count
            else:
                position = batch_position
            self._answer(answers, outcome, position)

    @staticmethod
    def _answer(answers: _Answers, outcome: _Outcome, position: int) -> None:
        if outcome.error is not None:
            answers.fail(outcome.pending, outcome.error)
        else:
            answers.succeed(outcome.pending, Committed(outcome.value, position))
