"""Group commit: concurrent commands share one transaction, yet each behaves as if alone.

The commands here work on a small counter aggregate defined for the test, so
that "applied exactly once" and "the right position" can be checked number
by number against the real event store of each backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, event
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from application.errors import Contention
from application.unit_of_work import CommandRunner, Committed, GroupCommitRunner, UnitOfWork
from domain.errors import AlreadyClaimed
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings


class Counter(Aggregate):
    """Counts increments; its version is 1 + the number of increments."""

    class Started(Aggregate.Created):
        """A counter at zero."""

    class Incremented(Aggregate.Event):
        """One more."""

    @classmethod
    def start(cls, counter_id: UUID) -> Counter:
        """A new counter."""
        return cls._create(cls.Started, id=counter_id)

    @event(Started)
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> None:
        """Add one."""
        self._incremented()

    @event(Incremented)
    def _incremented(self) -> None:
        self.count += 1


class Refused(Exception):
    """A command that decided to fail."""


Decide = Callable[[UnitOfWork], Any]


def increment(counter_id: UUID, *, fail_after: bool = False) -> Decide:
    """Increment the counter (creating it), return (id, count); or fail after changing it."""

    def decide(uow: UnitOfWork) -> tuple[UUID, int]:
        counter = uow.find(Counter, counter_id) or uow.add(Counter.start(counter_id))
        counter.increment()
        if fail_after:
            raise Refused("changed my mind")
        return counter_id, counter.count

    return decide


def refuse(uow: UnitOfWork) -> None:
    """Fail before changing anything."""
    raise Refused("no")


@pytest.fixture
def runner(container: Container) -> Iterator[GroupCommitRunner]:
    """A group-commit runner over the container's application."""
    group = GroupCommitRunner(container.app, attempts=8, max_batch=64)
    yield group
    group.close()


def count_of(container: Container, counter_id: UUID) -> int:
    """The counter's count, as stored."""
    counter: object = container.app.repository.get(counter_id)
    assert isinstance(counter, Counter)
    return counter.count


def position_of(container: Container, counter_id: UUID, count: int) -> int:
    """The log position of the event that brought the counter to ``count``."""
    notifications = container.app.recorder.select_notifications(start=1, limit=1_000_000)
    version = count + 1
    for notification in notifications:
        if notification.originator_id == counter_id and notification.originator_version == version:
            return notification.id
    raise AssertionError(f"no event of {counter_id} at version {version}")


@contextlib.contextmanager
def committer_held(runner: GroupCommitRunner) -> Iterator[Callable[[], None]]:
    """The committer busy with a first command until ``release()`` or the block's end.

    What is queued meanwhile waits for the next batch.
    """
    gate, holding = threading.Event(), threading.Event()

    def hold(uow: UnitOfWork) -> None:
        holding.set()
        gate.wait(10)

    first = runner.submit(hold)
    assert holding.wait(10)
    try:
        yield gate.set
    finally:
        gate.set()
        first.result(10)


def one_batch(runner: GroupCommitRunner, decides: list[Decide]) -> list[Future[Committed[Any]]]:
    """Submit ``decides`` so that they are certainly committed together, in order.

    A first command holds the committer until all of them are queued.
    """
    with committer_held(runner):
        batches_before = runner.batches
        futures = [runner.submit(decide) for decide in decides]
    for future in futures:
        future.exception(10)
    assert runner.batches == batches_before + 1 or len(decides) > 64
    return futures


def test_concurrent_commands_on_one_aggregate_and_on_many_are_each_applied_once_at_their_position(
    container: Container, runner: GroupCommitRunner
) -> None:
    hot = uuid4()
    own = [uuid4() for _ in range(16)]
    start = threading.Barrier(16)

    def client(index: int) -> list[tuple[UUID, int, int]]:
        start.wait()
        done = []
        for round_ in range(10):
            target = hot if round_ % 2 == 0 else own[index]
            committed = runner.run(increment(target))
            counter_id, count = committed.value
            done.append((counter_id, count, committed.position))
        return done

    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(client, range(16)) for r in rs]

    assert count_of(container, hot) == 80
    assert sorted(count for cid, count, _ in results if cid == hot) == list(range(1, 81))
    for counter_id in own:
        assert count_of(container, counter_id) == 5
    for counter_id, count, position in results:
        assert position == position_of(container, counter_id, count)
    assert runner.batches < runner.commands, "the commands were never grouped"


def test_a_failing_command_leaves_its_batch_mates_and_the_shared_aggregates_untouched(
    container: Container, runner: GroupCommitRunner
) -> None:
    shared, loaded_only, created = uuid4(), uuid4(), uuid4()
    runner.run(increment(loaded_only))
    futures = one_batch(
        runner,
        [
            increment(shared),
            increment(shared, fail_after=True),  # undone on top of a batch-mate's change
            refuse,
            increment(loaded_only, fail_after=True),  # undone on a state read from the store
            increment(created, fail_after=True),  # its new aggregate is dropped
            increment(shared),
            increment(loaded_only),
        ],
    )
    outcomes = [f.exception() or f.result().value for f in futures]

    assert outcomes[0] == (shared, 1)
    assert all(isinstance(o, Refused) for o in outcomes[1:5])
    assert outcomes[5] == (shared, 2)
    assert outcomes[6] == (loaded_only, 2)
    assert count_of(container, shared) == 2
    assert count_of(container, loaded_only) == 2
    assert created not in container.app.repository
    assert futures[6].result().position == position_of(container, loaded_only, 2)


def test_a_command_that_loses_a_race_is_retried_alone_and_its_batch_mates_commit_once(
    container: Container, runner: GroupCommitRunner, settings: Settings
) -> None:
    contested, others = uuid4(), [uuid4() for _ in range(6)]
    for counter_id in [contested, *others]:
        runner.run(increment(counter_id))
    other_process = build(settings)
    elsewhere = CommandRunner(other_process.app, attempts=1)
    decided = {"contested": 0}

    def contested_increment(uow: UnitOfWork) -> tuple[UUID, int]:
        decided["contested"] += 1
        counter = uow.get(Counter, contested)
        if decided["contested"] == 1:
            # Another writer gets in between this decision and the batch's save.
            elsewhere.run(increment(contested))
        counter.increment()
        return contested, counter.count

    try:
        futures = one_batch(
            runner,
            [increment(c) for c in others[:3]]
            + [contested_increment]
            + [increment(c) for c in others[3:]],
        )
    finally:
        other_process.close()

    assert decided["contested"] == 2
    assert futures[3].result().value == (contested, 3)
    assert count_of(container, contested) == 3
    for counter_id in others:
        assert count_of(container, counter_id) == 2
    for future in futures:
        counter_id, count = future.result().value
        assert future.result().position == position_of(container, counter_id, count)


def test_a_command_that_always_loses_gets_contention_after_the_bounded_retries(
    container: Container, settings: Settings
) -> None:
    contested, bystander = uuid4(), uuid4()
    group = GroupCommitRunner(container.app, attempts=3)
    other_process = build(settings)
    elsewhere = CommandRunner(other_process.app, attempts=1)
    group.run(increment(contested))
    decided = [0]

    def always_overtaken(uow: UnitOfWork) -> None:
        decided[0] += 1
        uow.get(Counter, contested).increment()
        elsewhere.run(increment(contested))

    try:
        futures = one_batch(group, [always_overtaken, increment(bystander)])
    finally:
        other_process.close()
        group.close()

    assert isinstance(futures[0].exception(), Contention)
    assert futures[1].result().value == (bystander, 1)
    # Three tries alone, after the one in the batch that revealed the conflict.
    assert decided[0] == 4
    assert count_of(container, contested) == 1 + decided[0]


@pytest.mark.parametrize("group_commit", [True, False])
def test_only_one_of_48_parallel_registrations_of_a_username_succeeds(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest, group_commit: bool
) -> None:
    from tests.conftest import make_settings

    built = build(make_settings(backend, tmp_path, request, group_commit=group_commit))
    start = threading.Barrier(48)

    def register(index: int) -> str:
        start.wait()
        try:
            built.app.register_user("Contested", f"user{index}@example.com", "password123")
        except AlreadyClaimed:
            return "taken"
        return "registered"

    try:
        with ThreadPoolExecutor(48) as pool:
            outcomes = list(pool.map(register, range(48)))
    finally:
        built.close()
    assert outcomes.count("registered") == 1
    assert outcomes.count("taken") == 47


def test_queued_commands_are_committed_when_the_runner_closes(container: Container) -> None:
    group = GroupCommitRunner(container.app, attempts=3)
    counter_id = uuid4()
    with committer_held(group) as release:
        queued = [group.submit(increment(counter_id)) for _ in range(3)]
        closing = threading.Thread(target=group.close)
        closing.start()
        release()
        closing.join(10)
    assert [f.result(0).value[1] for f in queued] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        group.submit(increment(counter_id))


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["increment", "fail_after", "refuse"]), st.integers(0, 3)),
    min_size=1,
    max_size=24,
)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_a_batch_has_the_outcome_of_its_commands_run_one_after_the_other(
    container: Container, runner: GroupCommitRunner, operations: list[tuple[str, int]]
) -> None:
    counters = [uuid4() for _ in range(4)]
    decides: list[Decide] = []
    expected: list[object] = []
    model = [0, 0, 0, 0]
    for kind, which in operations:
        if kind == "refuse":
            decides.append(refuse)
            expected.append(Refused)
        elif kind == "fail_after":
            decides.append(increment(counters[which], fail_after=True))
            expected.append(Refused)
        else:
            decides.append(increment(counters[which]))
            model[which] += 1
            expected.append((counters[which], model[which]))

    futures = one_batch(runner, decides)

    for future, wanted in zip(futures, expected, strict=True):
        if wanted is Refused:
            assert isinstance(future.exception(), Refused)
        else:
            assert future.result().value == wanted
    for counter_id, count in zip(counters, model, strict=True):
        if count:
            assert count_of(container, counter_id) == count
        else:
            assert counter_id not in container.app.repository


def overtaking(
    settings: Settings, counter_id: UUID, at_call: int
) -> tuple[Decide, list[int], Callable[[], None]]:
    """An increment during whose ``at_call``-th decision another process increments first.

    Returns the decide function, its call count, and a function that closes
    the other process.
    """
    other_process = build(settings)
    elsewhere = CommandRunner(other_process.app, attempts=1)
    calls = [0]

    def decide(uow: UnitOfWork) -> tuple[UUID, int]:
        calls[0] += 1
        counter = uow.get(Counter, counter_id)
        if calls[0] == at_call:
            elsewhere.run(increment(counter_id))
        counter.increment()
        return counter_id, counter.count

    return decide, calls, other_process.close


@pytest.mark.parametrize("named", [False, True], ids=["rehearsed", "reads-named"])
def test_a_command_overtaken_before_its_batch_saves_is_decided_on_fresh_state(
    container: Container, runner: GroupCommitRunner, settings: Settings, named: bool
) -> None:
    """Rehearsed, the other write lands before the batch reads: one decision in the batch.

    With its reads named, it lands between the batch's read and its save:
    the save is refused and the command decided again.
    """
    counter_id = uuid4()
    runner.run(increment(counter_id), reads=[counter_id])
    decide, calls, close = overtaking(settings, counter_id, at_call=1)

    try:
        committed = runner.run(decide, reads=[counter_id] if named else None)
    finally:
        close()

    # Rehearsed: the rehearsal, then one decision on what the store held.
    # Named: the refused decision, then the one on fresh state.
    assert calls[0] == 2
    assert committed.value == (counter_id, 3)
    assert count_of(container, counter_id) == 3
    assert committed.position == position_of(container, counter_id, 3)


def test_an_aggregate_kept_from_an_earlier_batch_is_brought_up_to_date_before_deciding(
    container: Container, runner: GroupCommitRunner, settings: Settings
) -> None:
    counter_id = uuid4()
    runner.run(increment(counter_id), reads=[counter_id])
    runner.run(increment(counter_id), reads=[counter_id])  # kept by the committer now
    other_process = build(settings)
    try:
        CommandRunner(other_process.app, attempts=1).run(increment(counter_id))
    finally:
        other_process.close()
    calls = [0]

    def counted(uow: UnitOfWork) -> tuple[UUID, int]:
        calls[0] += 1
        result: tuple[UUID, int] = increment(counter_id)(uow)
        return result

    committed = runner.run(counted, reads=[counter_id])

    assert calls[0] == 1  # decided once: on the other process's increment, not before it
    assert committed.value == (counter_id, 4)
    assert count_of(container, counter_id) == 4


@pytest.mark.parametrize("grouped", [True, False], ids=["group-commit", "one-save-each"])
def test_commands_awaited_on_an_event_loop_are_each_applied_once(
    container: Container, grouped: bool
) -> None:
    runner = (
        GroupCommitRunner(container.app, attempts=50)
        if grouped
        else CommandRunner(container.app, attempts=50)
    )
    counter_id = uuid4()
    runner.run(increment(counter_id))

    async def concurrently() -> list[Committed[Any]]:
        return await asyncio.gather(
            *(runner.run_async(increment(counter_id), reads=[counter_id]) for _ in range(20))
        )

    try:
        results = asyncio.run(concurrently())
    finally:
        runner.close()

    assert sorted(r.value[1] for r in results) == list(range(2, 22))
    assert count_of(container, counter_id) == 21
    for result in results:
        assert result.position == position_of(container, counter_id, result.value[1])


def test_a_caller_that_stops_waiting_neither_cancels_its_command_nor_breaks_its_batch(
    container: Container, runner: GroupCommitRunner
) -> None:
    counter_id = uuid4()

    async def one_gives_up(release: Callable[[], None]) -> Committed[Any]:
        impatient = asyncio.ensure_future(runner.run_async(increment(counter_id)))
        patient = asyncio.ensure_future(runner.run_async(increment(counter_id)))
        await asyncio.sleep(0)  # both queued behind the held batch
        impatient.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await impatient
        release()
        return await patient

    with committer_held(runner) as release:
        committed = asyncio.run(one_gives_up(release))

    assert committed.value == (counter_id, 2)
    assert count_of(container, counter_id) == 2


def test_commands_awaited_on_postgresql_are_decided_on_their_own_loop(
    container: Container, runner: GroupCommitRunner, backend: str
) -> None:
    # On PostgreSQL the store is awaited, so the loop's own task commits its
    # callers' commands and nothing crosses threads; SQLite's committer is a thread.
    counter_id = uuid4()
    deciders: set[int] = set()

    def noted(uow: UnitOfWork) -> tuple[UUID, int]:
        deciders.add(threading.get_ident())
        result: tuple[UUID, int] = increment(counter_id)(uow)
        return result

    async def concurrently() -> tuple[int, list[Committed[Any]]]:
        results = await asyncio.gather(*(runner.run_async(noted) for _ in range(10)))
        return threading.get_ident(), results

    loop_thread, results = asyncio.run(concurrently())

    assert sorted(r.value[1] for r in results) == list(range(1, 11))
    assert count_of(container, counter_id) == 10
    if backend == "postgres":
        assert deciders == {loop_thread}
    else:
        assert loop_thread not in deciders


def test_an_event_loops_callers_and_blocking_callers_on_one_aggregate_are_each_applied_once(
    container: Container, runner: GroupCommitRunner
) -> None:
    # Two committers at once on PostgreSQL (the loop's task and the thread):
    # they race on the same aggregate and the loser of each race retries.
    counter_id = uuid4()
    runner.run(increment(counter_id))

    async def on_the_loop() -> list[Committed[Any]]:
        return await asyncio.gather(
            *(runner.run_async(increment(counter_id), reads=[counter_id]) for _ in range(20))
        )

    with ThreadPoolExecutor(8) as pool:
        blocking = [pool.submit(runner.run, increment(counter_id)) for _ in range(20)]
        awaited = asyncio.run(on_the_loop())
        results = [f.result(30) for f in blocking] + awaited

    assert sorted(r.value[1] for r in results) == list(range(2, 42))
    assert count_of(container, counter_id) == 41
    for result in results:
        assert result.position == position_of(container, counter_id, result.value[1])


def test_drain_returns_once_the_loops_queued_commands_are_committed(
    container: Container, runner: GroupCommitRunner
) -> None:
    counter_id = uuid4()

    async def queue_then_drain() -> int:
        tasks = [asyncio.ensure_future(runner.run_async(increment(counter_id))) for _ in range(5)]
        await asyncio.sleep(0)  # queued, their callers waiting
        await runner.drain()
        assert all(task.done() for task in tasks)
        return count_of(container, counter_id)

    assert asyncio.run(queue_then_drain()) == 5
