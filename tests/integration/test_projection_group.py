"""Projections following the log together: each applies exactly the events past its own position.

A group reads each batch once for all its projections; those with events of
their own apply them in their own transactions, the others have their
positions moved together. Whatever the positions they start from, whoever
else moves them, and whichever of them fails, every event is applied once
by every projection that handles it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Connection, func, select

from domain.plays import Play
from domain.reactions import Reaction
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from infrastructure.wakeup import Wakeup
from projections.listening import ListeningProjector
from projections.projector import Projector, on
from projections.runner import PolicyRunner, ProjectionGroup, ProjectionRunner, read_position
from projections.schema import plays, stats_hourly
from projections.users import UsersProjector


def runner(container: Container, kind: type, batch_size: int) -> ProjectionRunner:
    (projector,) = [p for p in container.projectors if isinstance(p, kind)]
    return ProjectionRunner(
        projector,
        container.read_engine,
        container.app.recorder,
        container.app.mapper,
        batch_size=batch_size,
    )


def record_plays(container: Container, count: int) -> int:
    now = datetime.now(UTC)
    recordings = container.app.save(
        *(Play.record(uuid4(), uuid4(), "track", uuid4(), now) for _ in range(count))
    )
    return max(r.notification.id for r in recordings)


def play_rows(container: Container) -> int:
    with container.read_engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(plays)).scalar_one())


def hourly_plays(container: Container) -> int:
    """The plays summed in ``stats_hourly``: an increment applied twice would show here."""
    with container.read_engine.connect() as conn:
        return int(conn.execute(select(func.sum(stats_hourly.c.plays))).scalar_one() or 0)


def test_runners_at_different_positions_each_apply_only_what_they_lack(
    container: Container,
) -> None:
    record_plays(container, 7)
    listening = runner(container, ListeningProjector, batch_size=3)
    listening.run_batch()  # 3 of the 7 plays: this one starts ahead of the other
    head = record_plays(container, 5)
    users = runner(container, UsersProjector, batch_size=3)

    batches: list[int] = []
    ProjectionGroup([users, listening]).catch_up(on_batch=lambda: batches.append(1))

    assert listening.position() == head
    assert users.position() == head
    assert play_rows(container) == 12  # each play once: none twice, none lost
    assert len(batches) == 4  # users: 12 events from position 0, 3 at a time


def test_a_position_moved_by_another_runner_is_not_applied_twice(
    container: Container,
) -> None:
    record_plays(container, 4)
    mine = runner(container, ListeningProjector, batch_size=10)
    mine.catch_up()
    head = record_plays(container, 4)
    # A second runner of the same projection (another process) applies the new plays
    # first: the one that remembers position 4 must not apply them again.
    runner(container, ListeningProjector, batch_size=10).catch_up()
    users = runner(container, UsersProjector, batch_size=3)

    ProjectionGroup([users, mine]).catch_up()

    assert play_rows(container) == 8
    assert mine.position() == head
    assert users.position() == head


def test_stops_between_batches_when_asked(container: Container) -> None:
    record_plays(container, 6)
    listening = runner(container, ListeningProjector, batch_size=2)
    stop = threading.Event()
    ProjectionGroup([listening]).catch_up(stop=stop, on_batch=stop.set)
    assert listening.position() == 2
    assert head_of(container) == 6


def head_of(container: Container) -> int:
    return container.app.recorder.max_notification_id() or 0


def wait_for(container: Container, name: str, position: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with container.read_engine.connect() as conn:
            if read_position(conn, name) >= position:
                return
        time.sleep(0.05)
    raise AssertionError(f"projection {name} never reached {position}")


def test_two_workers_started_behind_the_log_apply_each_event_once(settings: Settings) -> None:
    # Two processes of the projections (say, an old one not yet stopped) start on a
    # backlog at the same moment, with small batches so that they interleave.
    small = settings.model_copy(update={"projection_batch_size": 7})
    writer = build(small)
    workers: list[Container] = []
    try:
        head = record_plays(writer, 60)
        workers = [build(small), build(small)]
        for worker in workers:
            worker.start_projections()
        wait_for(writer, "listening", head)
        assert play_rows(writer) == hourly_plays(writer) == 60
        # Caught up, both follow the log while four writers record plays at once.
        with ThreadPoolExecutor(4) as pool:
            heads = list(pool.map(lambda _: [record_plays(writer, 1) for _ in range(25)], range(4)))
        wait_for(writer, "listening", max(max(h) for h in heads))
        assert play_rows(writer) == hourly_plays(writer) == 160
    finally:
        for container in [*workers, writer]:
            container.close()


class Flaky(Projector):
    """Remembers the plays it applied; fails while told to, as a projection whose writes fail."""

    name = "flaky"
    version = 1

    def __init__(self) -> None:
        self.failing = True
        self.applied: list[UUID] = []

    @on(Play.Recorded)
    def _played(self, _conn: Connection, event: Any) -> None:
        if self.failing:
            raise RuntimeError("no space left on device")
        self.applied.append(event.originator_id)


def flaky_runner(container: Container, projector: Flaky) -> ProjectionRunner:
    return ProjectionRunner(
        projector, container.read_engine, container.app.recorder, container.app.mapper
    )


def test_a_failing_projection_backs_off_while_the_others_go_on(container: Container) -> None:
    head = record_plays(container, 6)
    flaky = Flaky()
    listening = runner(container, ListeningProjector, batch_size=100)
    group = ProjectionGroup([flaky_runner(container, flaky), listening])

    group.catch_up()

    assert listening.position() == head
    assert play_rows(container) == 6
    with container.read_engine.connect() as conn:
        assert read_position(conn, "flaky") == 0  # its failed batch moved nothing
    # Backing off, it is not even tried again at once: the others follow new events.
    head = record_plays(container, 2)
    group.catch_up()
    assert listening.position() == head
    assert flaky.applied == []

    flaky.failing = False
    time.sleep(1.1)  # the first back-off
    group.catch_up()

    with container.read_engine.connect() as conn:
        assert read_position(conn, "flaky") == head
    assert len(flaky.applied) == len(set(flaky.applied)) == 8
    assert play_rows(container) == 8


def test_projections_ahead_get_their_batch_in_the_same_round(container: Container) -> None:
    record_plays(container, 10)
    listening = runner(container, ListeningProjector, batch_size=3)
    listening.catch_up()
    head = record_plays(container, 2)
    users = runner(container, UsersProjector, batch_size=3)

    read = ProjectionGroup([users, listening]).run_batch()

    assert users.position() == 3  # far behind: its first batch
    assert listening.position() == head  # not held back by it
    assert play_rows(container) == 12
    assert read == 5  # two reads: from 0 and from 10


def test_an_idle_position_moved_by_someone_else_is_read_again(container: Container) -> None:
    record_plays(container, 3)
    users = runner(container, UsersProjector, batch_size=2)
    group = ProjectionGroup([users])
    group.catch_up()
    head = record_plays(container, 3)
    # Another process's runner of the same projection moves the position first.
    runner(container, UsersProjector, batch_size=10).catch_up()

    assert group.run_batch() == 2  # its guarded move finds the position moved, and leaves it

    assert users.position() == head
    assert group.run_batch() == 0  # position read again: at the head, nothing to do


def test_follows_the_log_until_stopped(container: Container) -> None:
    wakeup = Wakeup()
    stop = threading.Event()
    listening = runner(container, ListeningProjector, batch_size=100)
    users = runner(container, UsersProjector, batch_size=100)
    thread = threading.Thread(
        target=ProjectionGroup([listening, users]).run, args=(stop, wakeup, 0.05, 0.0)
    )
    thread.start()
    try:
        for _ in range(3):
            head = record_plays(container, 4)
            wakeup.set()
            wait_for(container, "listening", head)
            wait_for(container, "users", head)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert play_rows(container) == hourly_plays(container) == 12


class FlakyPolicy(Flaky):
    """The same, as a policy: nobody waits for its position."""

    name = "flaky_policy"
    policy = True


def record_reactions(container: Container, count: int) -> int:
    """Events no projection of these tests handles."""
    recordings = container.app.save(
        *(Reaction.open(uuid4(), "track", uuid4()) for _ in range(count))
    )
    return max(r.notification.id for r in recordings)


def policy_runner(container: Container, projector: Flaky) -> PolicyRunner:
    return PolicyRunner(
        projector,
        container.read_engine,
        container.app.recorder,
        container.app.mapper,
        idle_commit_seconds=60,
    )


def test_a_policy_commits_batches_with_nothing_for_it_only_now_and_then(
    container: Container,
) -> None:
    policy = FlakyPolicy()
    policy.failing = False
    runner = policy_runner(container, policy)

    record_reactions(container, 3)
    assert runner.run_batch() == 3
    assert runner.position() == 0  # only remembered
    head = record_plays(container, 2)
    assert runner.run_batch() == 2
    assert runner.position() == head  # its own events: committed at once, the rest with them
    assert len(policy.applied) == 2

    head = record_reactions(container, 2)
    assert runner.run_batch() == 2
    assert runner.run_batch() == 0
    assert runner.position() < head
    # Another process (or this one restarted) reads the remembered part again, harmlessly.
    policy_runner(container, policy).catch_up()
    assert len(policy.applied) == 2
    assert runner.catch_up() == head


def test_a_policy_commits_what_it_skipped_once_the_time_has_come(container: Container) -> None:
    policy = FlakyPolicy()
    runner = PolicyRunner(
        policy,
        container.read_engine,
        container.app.recorder,
        container.app.mapper,
        idle_commit_seconds=0.2,
    )
    head = record_reactions(container, 3)
    assert runner.run_batch() == 3
    assert runner.run_batch() == 0
    assert runner.position() == 0
    time.sleep(0.25)
    assert runner.run_batch() == 0  # at the head, and due: the position moves
    assert runner.position() == head
