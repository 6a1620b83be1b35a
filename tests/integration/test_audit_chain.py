"""The integrity chain: written with every event, recomputed by ``verify``, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import RecordConflictError, StoredEvent
from psycopg import sql

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings


def _populate(container: Container, users: int = 5) -> None:
    for i in range(users):
        user = container.app.register_user(f"user{i}", f"u{i}@example.com", "correct horse").value
        container.app.change_identity(user, f"renamed{i}", None)


@contextmanager
def _raw(settings: Settings) -> Iterator[tuple[Any, str, str]]:
    """A raw connection to the event store, its events table and its position column."""
    if settings.uses_postgres:
        assert settings.database_url is not None
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema))
            )
            yield conn, "theplaylist_events", "notification_id"
    else:
        lite = sqlite3.connect(settings.data_dir / "events.sqlite3", isolation_level=None)
        try:
            yield lite, "stored_events", "rowid"
        finally:
            lite.close()


def _flip_one_byte(settings: Settings, position: int) -> None:
    with _raw(settings) as (conn, table, pos):
        state = bytes(
            conn.execute(f"SELECT state FROM {table} WHERE {pos} = {position}").fetchone()[0]
        )
        tampered = bytearray(state)
        tampered[len(tampered) // 2] ^= 0x01
        param = "%s" if settings.uses_postgres else "?"
        conn.execute(
            f"UPDATE {table} SET state = {param} WHERE {pos} = {position}", (bytes(tampered),)
        )


def _delete_event(settings: Settings, position: int, *, with_link: bool) -> None:
    with _raw(settings) as (conn, table, pos):
        conn.execute(f"DELETE FROM {table} WHERE {pos} = {position}")
        if with_link:
            conn.execute(f"DELETE FROM event_chain WHERE notification_id = {position}")


def test_an_untouched_log_verifies_and_reports_its_head(container: Container) -> None:
    _populate(container)
    head = container.app.head
    report = container.audit.verify()
    assert report.ok
    assert report.checked == head
    assert report.first_broken_position is None
    assert report.head_position == head and report.head_hash is not None


def test_an_empty_log_verifies(container: Container) -> None:
    report = container.audit.verify()
    assert (report.ok, report.checked, report.head_hash) == (True, 0, None)


def test_flipping_one_byte_of_one_stored_event_is_detected(
    container: Container, settings: Settings
) -> None:
    _populate(container)
    _flip_one_byte(settings, 7)
    report = container.audit.verify()
    assert not report.ok
    assert report.first_broken_position == 7
    assert report.checked == 6


@pytest.mark.parametrize("with_link", [False, True], ids=["event-only", "event-and-link"])
def test_deleting_one_event_is_detected_even_with_its_link(
    container: Container, settings: Settings, with_link: bool
) -> None:
    _populate(container)
    _delete_event(settings, 5, with_link=with_link)
    report = container.audit.verify()
    assert not report.ok
    # Without its link the gap shows at the next event, whose hash chained the deleted one.
    assert report.first_broken_position == (6 if with_link else 5)


def test_deleting_the_last_event_is_caught_by_an_anchor(
    container: Container, settings: Settings
) -> None:
    _populate(container, users=2)
    before = container.audit.verify()
    assert before.head_hash is not None
    anchor = (before.head_position, bytes.fromhex(before.head_hash))
    _delete_event(settings, before.head_position, with_link=True)
    assert container.audit.verify().ok  # nothing inside the database can tell...
    cut = container.audit.verify(anchor=anchor)  # ...but the anchor kept outside can
    assert not cut.ok and cut.first_broken_position == before.head_position


def test_verification_streams_in_batches_and_reports_progress(settings: Settings) -> None:
    small = build(settings.model_copy(update={"audit_batch_size": 3}))
    try:
        _populate(small, users=4)
        seen: list[int] = []
        report = small.audit.verify(progress=lambda position, _head: seen.append(position))
        assert report.ok and report.checked == small.app.head
        assert seen == sorted(seen) and len(seen) > 3
    finally:
        small.close()


def test_a_log_recorded_before_the_chain_existed_is_chained_on_start(settings: Settings) -> None:
    first = build(settings)
    try:
        _populate(first, users=2)
        head = first.app.head
    finally:
        first.close()
    with _raw(settings) as (conn, _table, _pos):
        conn.execute("DROP TABLE event_chain")
    again = build(settings)
    try:
        report = again.audit.verify()
        assert report.ok and report.checked == head
        again.app.register_user("later", "later@example.com", "correct horse")
        assert again.audit.verify().ok
    finally:
        again.close()


def test_an_insert_refused_for_a_taken_version_leaves_neither_event_nor_link(
    container: Container, settings: Settings
) -> None:
    _populate(container, users=2)
    head = container.app.head
    recorder = container.app.recorder
    taken = recorder.select_notifications(1, 1)[0]
    fresh = StoredEvent(uuid4(), 1, taken.topic, taken.state)
    clash = StoredEvent(taken.originator_id, taken.originator_version, taken.topic, taken.state)

    with pytest.raises(RecordConflictError):
        recorder.insert_events([fresh, clash])

    assert container.app.head == head
    assert recorder.select_events(fresh.originator_id) == []
    with _raw(settings) as (conn, _, _):
        links = conn.execute("SELECT count(*) FROM event_chain").fetchone()[0]
    assert links == head
    # The connection went back to the pool usable: the next insert is chained on.
    recorder.insert_events([fresh])
    report = container.audit.verify()
    assert report.ok and report.checked == head + 1
