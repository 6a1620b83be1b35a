"""Scenario 4: queries over a populated catalogue, against the trivial endpoint.

Tracks, playlists (some of exactly 100 entries), reactions and plays spread
over the last two weeks are made through the domain, projected by the
production runners, then 64 signed-in clients ask the query service
(``--workers`` processes) for a track search, a 100-entry playlist, the
week's top tracks and their own history, in turns. The baseline is a trivial
async endpoint of the same server. The database is vacuumed between the load
and the measurement (:func:`settle`).

The query service keeps answers until the read models change
(``THEPLAYLIST_QUERY_CACHE_BYTES``, on by default); nothing is written while
the queries are measured, so after the first turn of each client most
answers are kept ones. A second query service with the cache off is
measured in the same alternation, so the table also shows what each answer
costs when it is made; and both are measured again while plays are written
at a steady rate (:class:`PlayWriter`), which moves the read models, and so
the stamp of the kept answers, every few tens of milliseconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from bench.commands import CLIENTS
from bench.common import Context, Figure, alternate, median
from bench.cpu import describe
from bench.loadgen import Request, drive
from bench.population import access_tokens, make_tracks, register_users, settings_from
from bench.server import running
from domain.playlists import Playlist
from domain.plays import Play
from domain.reactions import Reaction
from infrastructure.bootstrap import Container, build
from tests.support.postgres import free_port


def populate(container: Container, tracks: int, playlists: int, social: int) -> dict[str, Any]:
    """Users, tracks, playlists, then ``social`` reactions and plays."""
    rng = random.Random(11)
    app = container.app
    users = register_users(container, max(CLIENTS, min(1000, social // 1000)))
    track_ids = make_tracks(container, users[0], tracks)
    now = datetime.now(UTC)
    batch: list[Aggregate] = []
    pending = 0

    def add(aggregate: Aggregate) -> None:
        nonlocal pending
        batch.append(aggregate)
        pending += len(aggregate.pending_events)
        if pending >= 2000:
            app.save(*batch)
            batch.clear()
            pending = 0

    full: list[UUID] = []
    for index in range(playlists):
        owner = users[index % len(users)]
        playlist = Playlist.create(uuid4(), owner, f"Mix {index}", "", "public")
        size = 100 if index < 50 else rng.randrange(5, 40)
        for _ in range(size):
            playlist.add_entry(owner, uuid4(), rng.choice(track_ids), None, 10_000)
        if size == 100:
            full.append(playlist.id)
        add(playlist)
    seen: set[tuple[UUID, UUID]] = set()
    for _ in range(social):
        # The signed-in clients are the first users: they get a history.
        user = users[rng.randrange(CLIENTS)] if rng.random() < 0.2 else rng.choice(users)
        track = track_ids[min(int(rng.paretovariate(1.2)) - 1, len(track_ids) - 1)]
        at = now - timedelta(seconds=rng.randrange(14 * 86400))
        if rng.random() < 0.6:
            add(Play.record(uuid4(), user, "track", track, at))
        elif (user, track) not in seen:
            seen.add((user, track))
            reaction = Reaction.open(user, "track", track)
            reaction.set(rng.choice(("like", "love", "dislike")), at)
            add(reaction)
    if batch:
        app.save(*batch)
    for runner in container.runners():
        runner.catch_up()
    return {"users": users, "tracks": track_ids, "full_playlists": full}


def settle(container: Container) -> None:
    """VACUUM (ANALYZE) and CHECKPOINT the freshly loaded database, before measuring.

    pgbench vacuums before each run for the same reason: right after a bulk
    load, autovacuum, the first reads setting hint bits and the checkpoint of
    the load's writes would share the two cores with what is measured.
    """
    engine = container.read_engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")
        conn.exec_driver_sql("CHECKPOINT")


WRITES_PER_SECOND = 50


class PlayWriter:
    """Plays of the catalogue's tracks saved at a steady rate, when asked to.

    Saved and projected in this process (the projectors of its own container),
    as another service's commands and projectors would be: the query services
    then see their read models change while they answer.
    """

    def __init__(self, env: dict[str, str], data: dict[str, Any], per_second: float) -> None:
        self._container = build(settings_from(env))
        self._data = data
        self._interval = 1 / per_second
        self._on = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="bench-plays", daemon=True)

    def __enter__(self) -> PlayWriter:
        self._container.start_projections()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._on.set()
        self._thread.join()
        self._container.close()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Write plays while the block runs."""
        self._on.set()
        try:
            yield
        finally:
            self._on.clear()

    def _write(self) -> None:
        rng = random.Random(17)
        users, tracks = self._data["users"], self._data["tracks"]
        while not self._stop.is_set():
            self._on.wait()
            due = time.monotonic()
            while self._on.is_set() and not self._stop.is_set():
                track = tracks[min(int(rng.paretovariate(1.2)) - 1, len(tracks) - 1)]
                play = Play.record(uuid4(), rng.choice(users), "track", track, datetime.now(UTC))
                self._container.app.save(play)
                due += self._interval
                self._stop.wait(max(0.0, due - time.monotonic()))


def query_steps(token: str, data: dict[str, Any], seed: int) -> list[list[Request]]:
    """Search, playlist detail, top tracks of the week, own history, in turns."""
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {token}"}
    steps: list[list[Request]] = []
    for _ in range(8):
        steps.append([("GET", f"/api/v1/tracks?q=Artist+{rng.randrange(997)}", auth, None)])
        playlist = rng.choice(data["full_playlists"])
        steps.append([("GET", f"/api/v1/playlists/{playlist}", auth, None)])
        steps.append([("GET", "/api/v1/stats/top-tracks?period=week", auth, None)])
        steps.append([("GET", "/api/v1/me/history", auth, None)])
    return steps


def run(ctx: Context) -> list[Figure]:
    """Throughput and p99 of the query mix against the trivial endpoint."""
    sizes = (2_000, 300, 10_000) if ctx.quick else (100_000, 20_000, 1_000_000)
    env = ctx.env("postgres")
    container = build(settings_from(env))
    try:
        data = populate(container, *sizes)
        settle(container)
    finally:
        container.close()
    duration = 1.5 if ctx.quick else 10.0
    subjects = ("noop", "queries", "made", "queries_writes", "made_writes")
    summaries: dict[str, list[dict[str, Any]]] = {name: [] for name in subjects}
    made_env = {**env, "THEPLAYLIST_QUERY_CACHE_BYTES": "0"}
    with (
        running("queries", free_port(), env, ctx.log, ctx.workers) as base,
        running("queries", free_port(), made_env, ctx.log, ctx.workers) as made_base,
        PlayWriter(env, data, WRITES_PER_SECOND) as writer,
    ):
        # Tokens come from the command side, in this process's own container.
        with running("commands", free_port(), env, ctx.log) as commands:
            tokens = access_tokens(commands, CLIENTS)
        urls = {"noop": base, "queries": base, "made": made_base}
        servers = {
            name: urls[name.removesuffix("_writes")].removeprefix("http://").split(":")
            for name in subjects
        }
        mix = [query_steps(t, data, i) for i, t in enumerate(tokens)]
        noop = [[[("GET", "/bench/noop", {"Authorization": f"Bearer {t}"}, None)]] for t in tokens]

        def measure(name: str) -> float:
            host, port = servers[name]
            spec = {
                "host": host,
                "port": int(port),
                "warmup": 0.5 if ctx.quick else 1.0,
                "duration": duration,
                "clients": noop if name == "noop" else mix,
            }
            if name.endswith("_writes"):
                with writer.writing():
                    summary = drive(spec, ctx.scratch)
            else:
                summary = drive(spec, ctx.scratch)
            if summary["errors"] or summary["ok"] != summary["requests"]:
                raise RuntimeError(f"queries {name}: {summary['statuses']}")
            summaries[name].append(summary)
            return float(summary["throughput"])

        # Writes invalidate the kept answers: the subjects under writes come
        # after the others, so that each read-only turn starts as the last one ended.
        samples = alternate(ctx.reps, {name: partial(measure, name) for name in subjects[:3]})
        samples |= alternate(ctx.reps, {name: partial(measure, name) for name in subjects[3:]})
    p99 = {n: median([s["p99_ms"] for s in runs]) for n, runs in summaries.items()}
    p50 = {n: median([s["p50_ms"] for s in runs]) for n, runs in summaries.items()}
    what = f"{sizes[0]:,} tracks, {sizes[1]:,} playlists, {sizes[2]:,} reactions and plays"
    note = (
        f"{what}; p50/p99 ms: queries {p50['queries']:.1f}/{p99['queries']:.1f},"
        f" with no answer kept {p50['made']:.1f}/{p99['made']:.1f},"
        f" while {WRITES_PER_SECOND} plays/s are written {p50['queries_writes']:.1f}"
        f"/{p99['queries_writes']:.1f} (no answer kept {p50['made_writes']:.1f}"
        f"/{p99['made_writes']:.1f}),"
        f" trivial endpoint {p50['noop']:.1f}/{p99['noop']:.1f}."
        f" Queries, {describe([s['cpu'] for s in summaries['queries']])}."
        f" With no answer kept, {describe([s['cpu'] for s in summaries['made']])}."
        f" While plays are written (saved and projected by the bench process, counted"
        f" under other), {describe([s['cpu'] for s in summaries['queries_writes']])};"
        f" no answer kept, {describe([s['cpu'] for s in summaries['made_writes']])}."
        f" Trivial endpoint, {describe([s['cpu'] for s in summaries['noop']])}"
    )
    return [
        Figure(
            "queries",
            "search, 100-entry playlist, top tracks, history",
            "req/s",
            median(samples["queries"]),
            "trivial async endpoint",
            median(samples["noop"]),
            target=0.5,
            detail={
                "p50_ms": p50,
                "p99_ms": p99,
                "note": note,
                "cpu": {name: [s["cpu"] for s in runs] for name, runs in summaries.items()},
            },
        ),
        Figure(
            "queries",
            "the same, no answer kept (THEPLAYLIST_QUERY_CACHE_BYTES=0)",
            "req/s",
            median(samples["made"]),
            "trivial async endpoint",
            median(samples["noop"]),
        ),
        Figure(
            "queries",
            f"the same while {WRITES_PER_SECOND} plays/s are written",
            "req/s",
            median(samples["queries_writes"]),
            "trivial async endpoint",
            median(samples["noop"]),
        ),
        Figure(
            "queries",
            f"the same while {WRITES_PER_SECOND} plays/s are written, no answer kept",
            "req/s",
            median(samples["made_writes"]),
            "trivial async endpoint",
            median(samples["noop"]),
        ),
        Figure(
            "queries",
            "p99 latency of the mix",
            "ms",
            p99["queries"],
            "trivial async endpoint p99",
            p99["noop"],
            higher_is_better=False,
            target=1 / 3,
        ),
    ]
