"""Playback sessions: heard time is the sum of the played intervals; one play at the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidValue, StateConflict
from domain.playback import MAX_THRESHOLD_MS, PlaybackSession, threshold_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=30)
MINUTE = 60_000


def start(duration_ms: int = 200_000) -> PlaybackSession:
    return PlaybackSession.start(uuid4(), uuid4(), uuid4(), None, duration_ms, TIMEOUT, T0)


def report(
    session: PlaybackSession,
    action: str,
    position_ms: int,
    to_ms: int | None = None,
    at: datetime = T0,
) -> bool:
    return session.report(action, position_ms, to_ms, at, PLAY_ID)


PLAY_ID = UUID(int=7)


def test_the_threshold_is_half_the_track_or_four_minutes_whichever_is_less() -> None:
    assert threshold_for(3 * MINUTE) == 90_000
    assert threshold_for(3 * MINUTE + 1) == 90_001  # half rounded up: 2 * heard >= duration
    assert threshold_for(8 * MINUTE) == MAX_THRESHOLD_MS
    assert threshold_for(60 * MINUTE) == 4 * MINUTE


def test_a_play_is_counted_at_the_report_that_reaches_the_threshold() -> None:
    session = start(200_000)
    assert not report(session, "pause", 99_999)
    assert session.heard_ms == 99_999 and not session.counted
    assert not report(session, "resume", 99_999)
    assert report(session, "pause", 100_000)
    assert session.counted and session.play_id == PLAY_ID
    assert not report(session, "resume", 100_000)
    assert not report(session, "stop", 200_000)
    assert session.heard_ms == 200_000 and session.ended == "stopped"


def test_seeks_are_not_heard() -> None:
    session = start(10 * MINUTE)
    report(session, "seek", 10_000, to_ms=5 * MINUTE)
    report(session, "stop", 5 * MINUTE + 20_000)
    assert session.heard_ms == 30_000
    assert not session.counted


def test_seeking_back_and_listening_again_counts_again() -> None:
    session = start(100_000)
    report(session, "seek", 30_000, to_ms=0)
    report(session, "stop", 30_000)
    assert session.heard_ms == 60_000 and session.counted


def test_paused_time_is_not_heard_and_a_seek_while_paused_moves_the_playhead_only() -> None:
    session = start(200_000)
    report(session, "pause", 20_000)
    report(session, "seek", 20_000, to_ms=150_000)
    assert not session.playing
    report(session, "resume", 150_000)
    report(session, "stop", 160_000)
    assert session.heard_ms == 30_000


def test_progress_reports_close_intervals_while_playing() -> None:
    session = start(10 * MINUTE)
    report(session, "progress", 2 * MINUTE)
    assert session.heard_ms == 2 * MINUTE and session.playing
    assert report(session, "progress", 4 * MINUTE)
    assert session.counted


def test_reports_that_change_nothing_record_nothing() -> None:
    session = start()
    session.collect_events()
    report(session, "resume", 0)
    report(session, "pause", 1_000)
    report(session, "pause", 1_000)
    report(session, "progress", 1_000)
    assert [type(e).__name__ for e in session.collect_events()] == ["Paused"]


def test_a_seek_needs_a_target_and_positions_must_not_be_negative() -> None:
    session = start()
    with pytest.raises(InvalidValue):
        report(session, "seek", 1_000)
    with pytest.raises(InvalidValue):
        report(session, "pause", -1)
    with pytest.raises(InvalidValue):
        report(session, "rewind", 1_000)


def test_positions_past_the_end_are_clamped_to_the_duration() -> None:
    session = start(100_000)
    report(session, "stop", 150_000)
    assert session.heard_ms == 100_000


def test_a_stopped_session_refuses_reports_but_a_repeated_stop_is_harmless() -> None:
    session = start()
    report(session, "stop", 10_000)
    assert not report(session, "stop", 10_000)
    with pytest.raises(StateConflict):
        report(session, "resume", 10_000)


def test_a_session_expires_after_the_timeout_since_its_last_report() -> None:
    session = start(10 * MINUTE)
    report(session, "pause", 3 * MINUTE, at=T0 + timedelta(minutes=3))
    assert not session.expire_if_due(T0 + timedelta(minutes=32))
    assert session.expire_if_due(T0 + timedelta(minutes=33))
    assert session.ended == "expired"
    assert session.heard_ms == 3 * MINUTE and not session.counted
    expired = [e for e in session.collect_events() if isinstance(e, PlaybackSession.Expired)]
    assert [e.at for e in expired] == [T0 + timedelta(minutes=33)]
    assert session.expire_if_due(T0 + timedelta(hours=5))
    assert not session.collect_events()


def test_an_abandoned_session_keeps_the_play_its_reports_earned() -> None:
    session = start(4 * MINUTE)
    assert report(session, "progress", 2 * MINUTE)
    assert session.expire_if_due(T0 + timedelta(hours=1))
    assert session.counted


# A player's report: (action, position, seek target). Positions stay within the track.
DURATION = 300_000
_position = st.integers(0, DURATION)
_report = st.one_of(
    st.tuples(st.sampled_from(["pause", "resume", "progress"]), _position, st.none()),
    st.tuples(st.just("seek"), _position, _position),
)


def heard_by_intervals(reports: list[tuple[str, int, int | None]]) -> tuple[int, int]:
    """The model: collect the closed playing intervals, add up their lengths.

    Returns the total heard and the number of the report (1-based) at which the
    running total first reached the threshold (0 if never).
    """
    intervals: list[tuple[int, int]] = []
    opened_at: int | None = 0  # playing from 0 at the start
    reached_at = 0
    threshold = threshold_for(DURATION)
    for number, (action, position, to) in enumerate(reports, start=1):
        if opened_at is not None and action in ("pause", "progress", "seek", "stop"):
            intervals.append((opened_at, position))
            opened_at = None if action in ("pause", "stop") else position
        if action == "seek":
            opened_at = to if opened_at is not None else None
        elif action == "resume" and opened_at is None:
            opened_at = position
        total = sum(max(0, end - begin) for begin, end in intervals)
        if not reached_at and total >= threshold:
            reached_at = number
        if action == "stop":
            break
    return sum(max(0, end - begin) for begin, end in intervals), reached_at


@given(reports=st.lists(_report, max_size=25), stop_at=st.none() | _position)
def test_heard_time_is_the_sum_of_the_played_intervals_and_one_play_is_counted(
    reports: list[tuple[str, int, int | None]], stop_at: int | None
) -> None:
    if stop_at is not None:
        reports = [*reports, ("stop", stop_at, None)]
    session = start(DURATION)
    counted_at = [
        number
        for number, (action, position, to) in enumerate(reports, start=1)
        if report(session, action, position, to)
    ]
    heard, reached_at = heard_by_intervals(reports)
    assert session.heard_ms == heard
    assert counted_at == ([reached_at] if reached_at else [])
    events: list[Any] = list(session.collect_events())
    plays = [e for e in events if isinstance(e, PlaybackSession.PlayCounted)]
    assert len(plays) == (1 if heard >= threshold_for(DURATION) else 0)
    replayed: Any = None
    for domain_event in events:
        replayed = domain_event.mutate(replayed)
    assert (replayed.heard_ms, replayed.play_id) == (session.heard_ms, session.play_id)
