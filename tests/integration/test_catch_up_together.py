"""Projections caught up together: each applies exactly the events past its own position."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import func, select

from domain.plays import Play
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from projections.listening import ListeningProjector
from projections.runner import ProjectionRunner, catch_up_together, read_position
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
    catch_up_together([users, listening], on_batch=lambda: batches.append(1))

    assert listening.position() == head
    assert users.position() == head
    assert play_rows(container) == 12  # each play once: none twice, none lost
    assert len(batches) == 4  # 12 events from position 0, 3 at a time


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

    catch_up_together([users, mine])

    assert play_rows(container) == 8
    assert mine.position() == head
    assert users.position() == head


def test_stops_between_batches_when_asked(container: Container) -> None:
    record_plays(container, 6)
    listening = runner(container, ListeningProjector, batch_size=2)
    stop = threading.Event()
    catch_up_together([listening], stop=stop, on_batch=stop.set)
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
        # Caught up, each then follows the log in its own threads.
        head = record_plays(writer, 5)
        wait_for(writer, "listening", head)
        assert play_rows(writer) == hourly_plays(writer) == 65
    finally:
        for container in [*workers, writer]:
            container.close()
