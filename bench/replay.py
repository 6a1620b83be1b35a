"""Scenario 2: rebuilding every read model from a log generated through the domain.

The log is made of real aggregates (users through the registration command;
tracks, playlists with entries, reactions and plays through the domain's own
methods) saved in large transactions, in a mix like a social music service's:
mostly plays and reactions. Every read-model projector is then reset and run
from position 0 with the production runners (their exactly-once position
guards) in the batches of ``projections rebuild`` (``THEPLAYLIST_PROJECTION_REBUILD_BATCH_SIZE``),
caught up together the way a projection worker starts (the log read and
decoded once for all of them): the rate is log events per second of wall
time to rebuild them all. The baseline is the same projectors, one after
another, with one event per transaction, timed over a bounded slice of the log.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from sqlalchemy import delete

from bench.common import Context, Figure, median
from bench.population import make_tracks, register_users, settings_from
from domain.playlists import Playlist
from domain.plays import Play
from domain.reactions import Reaction
from infrastructure.bootstrap import Container, build
from projections.runner import ProjectionGroup, ProjectionRunner
from projections.schema import projection_positions

KINDS = ("like", "dislike", "love")


def generate(container: Container, events: int, seed: int = 7) -> int:
    """Append about ``events`` events; return how many the log holds."""
    rng = random.Random(seed)
    app = container.app
    users = register_users(container, max(20, min(1000, events // 1000)))
    tracks = make_tracks(container, users[0], max(50, events // 50))
    now = datetime.now(UTC) - timedelta(days=30)
    reactions: dict[tuple[UUID, UUID], Reaction] = {}
    pending: list[Aggregate] = []
    pending_events = 0
    head = app.recorder.max_notification_id() or 0

    def flush() -> None:
        nonlocal pending_events, head
        if pending:
            recordings = app.save(*pending)
            head = max(r.notification.id for r in recordings)
            pending.clear()
            pending_events = 0

    while head + pending_events < events:
        roll = rng.random()
        user = rng.choice(users)
        at = now + timedelta(seconds=rng.randrange(30 * 86400))
        if roll < 0.005:
            playlist = Playlist.create(
                uuid4(), user, f"Playlist {rng.randrange(10**9)}", "", "public"
            )
            for _ in range(rng.randrange(5, 40)):
                playlist.add_entry(user, uuid4(), rng.choice(tracks), None, 10_000)
            pending.append(playlist)
            pending_events += len(playlist.pending_events)
        elif roll < 0.45:
            track = rng.choice(tracks)
            reaction = reactions.get((user, track))
            if reaction is None:
                reaction = Reaction.open(user, "track", track)
                reactions[(user, track)] = reaction
            if reaction in pending:
                flush()
            before = len(reaction.pending_events)
            if rng.random() < 0.7:
                reaction.set(rng.choice(KINDS), at)
            else:
                reaction.clear(rng.choice(KINDS), at)
            if len(reaction.pending_events) > before:
                pending.append(reaction)
                pending_events += len(reaction.pending_events)
        else:
            pending.append(Play.record(uuid4(), user, "track", rng.choice(tracks), at))
            pending_events += 1
        if pending_events >= 2000:
            flush()
    flush()
    return app.recorder.max_notification_id() or 0


def read_model_runners(container: Container, batch_size: int) -> list[ProjectionRunner]:
    """A runner per read-model projector (side-effect policies left out)."""
    return [
        ProjectionRunner(
            projector,
            container.read_engine,
            container.app.recorder,
            container.app.mapper,
            batch_size=batch_size,
        )
        for projector in container.projectors
        if projector.tables
    ]


def reset(container: Container) -> None:
    """Empty every read model and rewind every projection to 0."""
    with container.read_engine.begin() as conn:
        for projector in container.projectors:
            for table in projector.tables:
                conn.execute(delete(table))
        conn.execute(delete(projection_positions))


def batched_rate(container: Container, head: int, batch_size: int) -> float:
    """Log events per second to rebuild every read model from scratch."""
    reset(container)
    runners = read_model_runners(container, batch_size)
    started = time.perf_counter()
    ProjectionGroup(runners).catch_up()
    elapsed = time.perf_counter() - started
    for runner in runners:
        if runner.position() != head:
            raise RuntimeError(f"projection {runner.name} stopped short of {head}")
    return head / elapsed


def one_by_one_rate(container: Container, head: int, seconds: float) -> float:
    """The same, one event per transaction, timed over a slice of the log per projector."""
    reset(container)
    total = 0.0
    for runner in read_model_runners(container, 1):
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline and runner.run_batch():
            pass
        done = runner.position()
        total += (time.perf_counter() - started) * head / max(1, done)
    return head / total


def measure(ctx: Context, backend: str, events: int) -> dict[str, Any]:
    """Generate the log on ``backend`` and time both ways."""
    container = build(settings_from(ctx.env(backend)))
    try:
        started = time.perf_counter()
        head = generate(container, events)
        generated_in = time.perf_counter() - started
        batch_size = container.settings.projection_rebuild_batch_size
        slice_seconds = 0.25 if ctx.quick else 5.0
        batched, single = [], []
        # A full rebuild of a million events takes minutes: three are enough for a median.
        for _ in range(min(ctx.reps, 3)):
            single.append(one_by_one_rate(container, head, slice_seconds))
            batched.append(batched_rate(container, head, batch_size))
        return {
            "events": head,
            "generated_per_second": head / generated_in,
            "batched": batched,
            "single": single,
            "batch_size": batch_size,
        }
    finally:
        container.close()


def run(ctx: Context) -> list[Figure]:
    """Replay on PostgreSQL (the target) and on SQLite."""
    figures = []
    sizes = (
        {"postgres": 15_000, "sqlite": 8_000}
        if ctx.quick
        else {
            "postgres": 1_000_000,
            "sqlite": 200_000,
        }
    )
    names = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
    for backend, events in sizes.items():
        result = measure(ctx, backend, events)
        figures.append(
            Figure(
                "replay",
                f"rebuild all read models, {names[backend]} ({result['events']:,} events)",
                "events/s",
                median(result["batched"]),
                "one event per transaction",
                median(result["single"]),
                target=30.0 if backend == "postgres" else None,
                detail=result,
            )
        )
    return figures
