"""Plays, playback sessions, history and analytics, on SQLite and PostgreSQL.

Time is a :class:`SteppingClock` passed to the container, so windows, buckets
and session timeouts are exercised without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select

from application.errors import NotFound
from domain.errors import InvalidValue, StateConflict
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from projections.queries.listening import PERIODS
from projections.schema import playlists, plays
from tests.conftest import catch_up
from tests.support.catalog import SteppingClock, add_track, delete_track

T0 = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(T0)


@pytest.fixture
def timed(settings: Settings, clock: SteppingClock) -> Iterator[Container]:
    """A container whose application reads the stepping clock."""
    built = build(settings, clock=clock)
    try:
        yield built
    finally:
        built.close()


def play_count(container: Container, target_id: UUID) -> int:
    with container.read_engine.connect() as conn:
        return len(conn.execute(select(plays.c.id).where(plays.c.target_id == target_id)).all())


def test_three_plays_by_each_of_forty_users_in_parallel_give_a_hundred_and_twenty(
    container: Container,
) -> None:
    track = add_track(container, uuid4())
    owner = uuid4()
    playlist = container.app.create_playlist(owner, "Party", None, "public").value.id
    listeners = [uuid4() for _ in range(40)]
    barrier = threading.Barrier(40)

    def listen(user: UUID) -> None:
        barrier.wait()
        for _ in range(3):
            asyncio.run(container.app.record_play(user, "track", track))
        asyncio.run(container.app.record_play(user, "playlist", playlist))

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(listen, listeners))
    catch_up(container)
    assert play_count(container, track) == 120
    track_row = container.queries.tracks.get(track)
    assert track_row is not None and track_row.counts.plays == 120
    row = container.queries.playlists.visible(playlist, None)
    assert row is not None and row.counts.plays == 40
    now = datetime.now(UTC)
    top = container.queries.listening.top(
        "track", "plays", now - PERIODS["day"], now, 5, select(plays.c.target_id)
    )
    assert [(r.target_id, r.count) for r in top] == [(track, 120)]
    history = container.queries.listening.history(listeners[0], cursor=None, limit=10)
    assert len(history.items) == 4 and history.next_cursor is None


def test_plays_of_deleted_unknown_or_hidden_targets_are_not_found(container: Container) -> None:
    owner = uuid4()
    track = add_track(container, owner)
    private = container.app.create_playlist(owner, "Mine", None, "private").value.id
    delete_track(container, track, owner)
    for kind, target in (("track", track), ("track", uuid4()), ("playlist", private)):
        with pytest.raises(NotFound):
            asyncio.run(container.app.record_play(uuid4(), kind, target))
    asyncio.run(container.app.record_play(owner, "playlist", private))


def test_history_is_newest_first_paginated_and_private_to_its_user(
    timed: Container, clock: SteppingClock
) -> None:
    user, other = uuid4(), uuid4()
    track = add_track(timed, uuid4())
    expected = []
    for _ in range(5):
        expected.append(asyncio.run(timed.app.record_play(user, "track", track)).value)
        clock.advance(timedelta(minutes=1))
    # Two plays at the same instant are still ordered, by id.
    expected.append(asyncio.run(timed.app.record_play(user, "track", track)).value)
    expected.append(asyncio.run(timed.app.record_play(user, "track", track)).value)
    asyncio.run(timed.app.record_play(other, "track", track))
    catch_up(timed)
    seen: list[UUID] = []
    cursor = None
    while True:
        page = timed.queries.listening.history(user, cursor=cursor, limit=2)
        seen.extend(item.id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 7
    assert set(seen[:2]) == set(expected[5:])
    assert seen[2:] == expected[:5][::-1]
    played_at = [
        p.played_at for p in timed.queries.listening.history(user, cursor=None, limit=9).items
    ]
    assert played_at == sorted(played_at, reverse=True)


def test_top_lists_count_rolling_windows_ending_now(timed: Container, clock: SteppingClock) -> None:
    owner = uuid4()
    old, recent = add_track(timed, owner), add_track(timed, owner)
    listed = select(plays.c.target_id)
    clock.set(T0 - timedelta(days=3, minutes=1))
    for _ in range(5):
        asyncio.run(timed.app.record_play(uuid4(), "track", old))
    asyncio.run(timed.app.set_reaction(uuid4(), "track", old, "like"))
    clock.set(T0 - timedelta(hours=23, minutes=59))
    for _ in range(2):
        asyncio.run(timed.app.record_play(uuid4(), "track", recent))
    liker = uuid4()
    asyncio.run(timed.app.set_reaction(liker, "track", recent, "like"))
    asyncio.run(timed.app.set_reaction(uuid4(), "track", recent, "love"))
    clock.set(T0)
    asyncio.run(timed.app.record_play(uuid4(), "track", recent))
    catch_up(timed)
    top = timed.queries.listening.top

    def ranked(by: str, period: str) -> list[tuple[UUID, int]]:
        start = T0 - PERIODS[period] if period != "all" else datetime(1970, 1, 1, tzinfo=UTC)
        return [(r.target_id, r.count) for r in top("track", by, start, T0, 10, listed)]  # type: ignore[arg-type]

    assert ranked("plays", "day") == [(recent, 3)]
    assert ranked("plays", "week") == [(old, 5), (recent, 3)]
    assert ranked("plays", "all") == [(old, 5), (recent, 3)]
    assert ranked("likes", "day") == [(recent, 1)]
    assert ranked("loves", "week") == [(recent, 1)]
    assert sorted(ranked("likes", "month")) == sorted([(old, 1), (recent, 1)])
    # Two minutes later, the plays of 23h59m ago have left the day.
    later = T0 + timedelta(minutes=2)
    assert [
        (r.target_id, r.count)
        for r in top("track", "plays", later - PERIODS["day"], later, 10, listed)
    ] == [(recent, 1)]
    # Taking a like back in the window takes it out of the window's count.
    asyncio.run(timed.app.clear_reaction(liker, "track", recent, "like"))
    catch_up(timed)
    assert ranked("likes", "day") == []
    # Only eligible targets are ranked (the query service passes live tracks).
    assert top("track", "plays", T0 - PERIODS["week"], T0, 10, select(playlists.c.id)) == []


def test_plays_per_bucket_count_exactly_between_from_and_to(
    timed: Container, clock: SteppingClock
) -> None:
    track = add_track(timed, uuid4())
    moments = [
        T0 - timedelta(days=40),
        T0 - timedelta(days=2, hours=3),
        T0 - timedelta(hours=5, minutes=10),
        T0 - timedelta(hours=5, minutes=5),
        T0 - timedelta(minutes=20),
        T0,
    ]
    for moment in moments:
        clock.set(moment)
        asyncio.run(timed.app.record_play(uuid4(), "track", track))
    catch_up(timed)
    buckets = timed.queries.listening.plays_per_bucket
    daily = buckets("track", track, "day", T0 - timedelta(days=30), T0 + timedelta(seconds=1), 100)
    assert len(daily) == 31 and sum(b.count for b in daily) == 5
    assert daily[0].start == datetime(2026, 2, 8, tzinfo=UTC)
    assert {b.start.day: b.count for b in daily if b.count} == {8: 1, 10: 4}
    hourly = buckets("track", track, "hour", T0 - timedelta(hours=6), T0, 100)
    assert [b.count for b in hourly] == [0, 2, 0, 0, 0, 0, 1]
    assert hourly[0].start == datetime(2026, 3, 10, 6, tzinfo=UTC)
    monthly = buckets("track", track, "month", T0 - timedelta(days=60), T0 + timedelta(hours=1), 10)
    assert [(b.start.month, b.count) for b in monthly] == [(1, 1), (2, 0), (3, 5)]
    # Whole hours come from the hourly sums, the partial edges from the raw plays.
    exact = buckets("track", track, "hour", T0 - timedelta(hours=5, minutes=7), T0, 100)
    assert sum(b.count for b in exact) == 2
    with pytest.raises(InvalidValue):
        buckets("track", track, "hour", T0 - timedelta(days=30), T0, 100)
    with pytest.raises(InvalidValue):
        buckets("track", track, "day", T0, T0 - timedelta(days=1), 100)


def test_a_playback_session_yields_one_play_once_half_the_track_is_heard(
    timed: Container, clock: SteppingClock
) -> None:
    user = uuid4()
    track = add_track(timed, uuid4(), duration_ms=180_000)
    session = timed.app.start_playback(user, track).value.id
    clock.advance(timedelta(seconds=60))
    state = timed.app.report_playback(user, session, "pause", 60_000).value
    assert (state.heard_ms, state.play_id) == (60_000, None)
    timed.app.report_playback(user, session, "resume", 60_000)
    timed.app.report_playback(user, session, "seek", 70_000, to_ms=150_000)
    state = timed.app.report_playback(user, session, "progress", 170_000).value
    assert state.heard_ms == 90_000 and state.play_id is not None
    state = timed.app.report_playback(user, session, "stop", 180_000).value
    assert state.ended == "stopped" and state.heard_ms == 100_000
    catch_up(timed)
    history = timed.queries.listening.history(user, cursor=None, limit=5).items
    assert [(p.target_id, p.source) for p in history] == [(track, "session")]
    assert play_count(timed, track) == 1
    with pytest.raises(NotFound):
        timed.app.report_playback(uuid4(), session, "pause", 1)


def test_racing_reports_of_one_session_record_one_play(timed: Container) -> None:
    user = uuid4()
    track = add_track(timed, uuid4(), duration_ms=100_000)
    session = timed.app.start_playback(user, track).value.id
    barrier = threading.Barrier(8)

    def report(_: int) -> None:
        barrier.wait()
        timed.app.report_playback(user, session, "progress", 60_000)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(report, range(8)))
    catch_up(timed)
    assert play_count(timed, track) == 1


def test_an_abandoned_session_expires_and_is_judged_on_what_it_heard(
    timed: Container, clock: SteppingClock, settings: Settings
) -> None:
    user = uuid4()
    short, long_ = add_track(timed, uuid4()), add_track(timed, uuid4(), duration_ms=600_000)
    timeout = timedelta(seconds=settings.playback_session_timeout_seconds)
    heard = timed.app.start_playback(user, short).value.id
    unheard = timed.app.start_playback(user, long_).value.id
    clock.advance(timedelta(minutes=2))
    timed.app.report_playback(user, heard, "progress", 120_000)
    timed.app.report_playback(user, unheard, "progress", 120_000)
    clock.advance(timeout)
    for session in (heard, unheard):
        with pytest.raises(StateConflict):
            timed.app.report_playback(user, session, "stop", 130_000)
        with pytest.raises(StateConflict):
            timed.app.report_playback(user, session, "resume", 130_000)
    catch_up(timed)
    assert (play_count(timed, short), play_count(timed, long_)) == (1, 0)


def test_a_session_from_a_playlist_needs_a_playlist_that_holds_the_track(
    timed: Container,
) -> None:
    owner = uuid4()
    track, other = add_track(timed, owner), add_track(timed, owner)
    playlist = timed.app.create_playlist(owner, "Session", None, "private").value.id
    timed.app.add_entry(owner, playlist, track)
    with pytest.raises(InvalidValue):
        timed.app.start_playback(owner, other, playlist)
    with pytest.raises(NotFound):
        timed.app.start_playback(uuid4(), track, playlist)
    session = timed.app.start_playback(owner, track, playlist).value.id
    timed.app.report_playback(owner, session, "stop", 150_000)
    catch_up(timed)
    history = timed.queries.listening.history(owner, cursor=None, limit=5).items
    assert [(p.target_id, p.playlist_id) for p in history] == [(track, playlist)]
