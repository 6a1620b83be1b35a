"""Rebuilding read models beside the live ones, on both backends."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import select

from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from projections.rebuild import RebuildInterrupted, UpgradingRunner, upgrading
from projections.users import UsersProjector
from tests.conftest import catch_up

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]


def populate(container: Container, users: int = 4) -> list[UUID]:
    """Users, sessions, playlists, reactions and plays: every read model gets rows."""
    app = container.app
    ids = []
    for i in range(users):
        user = app.register_user(f"user{i}", f"u{i}@example.com", PASSWORD).value
        ids.append(user)
        app.open_session(f"user{i}", PASSWORD, "pytest")
        playlist = app.create_playlist(user, f"mix {i}", "songs", "public").value.id
        asyncio.run(app.set_reaction(ids[0], "playlist", playlist, "like"))
        asyncio.run(app.record_play(user, "playlist", playlist))
    app.change_identity(ids[1], "renamed", None)
    app.grant_role("user2", "auditor")
    app.delete_user(ids[3])
    return ids


def dump(container: Container) -> dict[str, list[Any]]:
    """Every row of every rebuildable read model, in a stable order."""
    rows: dict[str, list[Any]] = {}
    with container.read_engine.connect() as conn:
        for projector in container.projectors:
            for table in projector.tables:
                order = list(table.primary_key.columns) or list(table.columns)
                rows[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return rows


def rebuildable(container: Container) -> list[str]:
    """The projections that keep tables."""
    return [p.name for p in container.projectors if p.tables]


def stored_version(container: Container, name: str) -> int | None:
    """The version recorded with the live model."""
    return container.rebuild(name).stored_version()


def test_a_rebuilt_read_model_equals_the_live_one(container: Container) -> None:
    populate(container)
    catch_up(container)
    live = dump(container)
    head = container.app.head
    filled = {name for name, rows in live.items() if rows}
    assert {"users", "auth_sessions", "playlists", "reactions", "plays"} <= filled
    for name in rebuildable(container):
        report = container.rebuild(name).run()
        assert report.position == head
    assert dump(container) == live
    for runner in container.runners():
        assert runner.position() == head


def test_the_query_api_answers_the_same_before_and_after_a_rebuild(settings: Settings) -> None:
    with TestClient(Combined(settings, run_projections=False)) as client:
        container: Container = client.app.container  # type: ignore[attr-defined]
        ids = populate(container)
        catch_up(container)
        token = client.post("/api/v1/auth/token", data={"username": "user0", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        paths = [f"/api/v1/users/{i}" for i in ids] + ["/api/v1/me", "/api/v1/playlists"]

        def answers() -> list[Any]:
            return [(p, client.get(p, headers=auth).json()) for p in paths]

        before = answers()
        for name in rebuildable(container):
            container.rebuild(name).run()
        assert answers() == before


def test_events_recorded_during_a_rebuild_are_in_the_switched_model(container: Container) -> None:
    populate(container)
    catch_up(container)
    late: list[UUID] = []

    def write_meanwhile(_position: int, _head: int) -> None:
        if not late:
            late.append(container.app.register_user("late", "late@x.org", PASSWORD).value)

    report = container.rebuild("users", progress=write_meanwhile).run()
    assert report.position == container.app.head
    profile = container.queries.users.public_profile(late[0])
    assert profile is not None and profile.username == "late"


def test_an_interrupted_rebuild_leaves_the_live_model_and_a_rerun_resumes(
    settings: Settings,
) -> None:
    small = settings.model_copy(update={"projection_rebuild_batch_size": 2})
    from infrastructure.bootstrap import build

    container = build(small)
    try:
        populate(container)
        catch_up(container)
        live = dump(container)
        stop = threading.Event()
        rebuild = container.rebuild("users", progress=lambda _p, _h: stop.set())
        with pytest.raises(RebuildInterrupted):
            rebuild.run(stop=stop)
        assert dump(container) == live
        report = container.rebuild("users").run()
        assert report.resumed_from > 0
        assert dump(container) == live
    finally:
        container.close()


class _StopWhenIdle:
    """A wake-up that stops the runner the first time it would wait."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def wait(self, timeout: float) -> None:
        self._stop.set()


def test_a_version_bump_rebuilds_the_read_model_before_following_the_log(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(container)
    catch_up(container)
    live = dump(container)
    assert stored_version(container, "users") == UsersProjector.version
    runner = next(r for r in container.runners() if r.name == "users")
    assert upgrading(runner, container.rebuild("users"), 10) is runner

    monkeypatch.setattr(UsersProjector, "version", UsersProjector.version + 1)
    upgraded = upgrading(runner, container.rebuild("users"), 10)
    assert isinstance(upgraded, UpgradingRunner)
    stop = threading.Event()
    upgraded.run(stop, _StopWhenIdle(stop), 0.01)
    assert stored_version(container, "users") == UsersProjector.version
    assert dump(container) == live


# -- SIGKILL during a rebuild: a real process, killed for real --------------------


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``theplaylist`` process on this test's stores."""
    env = {
        **os.environ,
        "THEPLAYLIST_DATA_DIR": str(settings.data_dir),
        "THEPLAYLIST_LOG_FORMAT": "text",
        "THEPLAYLIST_COOKIE_SECURE": "false",
        "THEPLAYLIST_PROJECTION_REBUILD_BATCH_SIZE": "3",
    }
    if settings.database_url is not None:
        env["THEPLAYLIST_DATABASE_URL"] = settings.database_url
        env["THEPLAYLIST_DATABASE_SCHEMA"] = settings.database_schema
    return env


@contextmanager
def live_tables_held(settings: Settings) -> Iterator[None]:
    """Block the switch (not the replay, nor readers) while inside."""
    if settings.database_url is not None:
        with psycopg.connect(settings.database_url) as conn:
            conn.execute(
                sql.SQL("LOCK TABLE {}.users IN ACCESS SHARE MODE").format(
                    sql.Identifier(settings.database_schema)
                )
            )
            yield
            conn.rollback()
        return
    lite = sqlite3.connect(settings.data_dir / "readmodels.sqlite3", isolation_level=None)
    try:
        lite.execute("BEGIN IMMEDIATE")
        yield
        lite.execute("ROLLBACK")
    finally:
        lite.close()


def shadow_position(settings: Settings) -> int:
    """How far the rebuild of ``users`` got in its shadow (0 before it started)."""
    try:
        if settings.database_url is not None:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                row = conn.execute(
                    sql.SQL(
                        "SELECT position FROM {}.projection_positions WHERE name = 'users'"
                    ).format(sql.Identifier(f"{settings.database_schema}_rb_users"))
                ).fetchone()
        else:
            path = settings.data_dir / "readmodels.rebuild-users.sqlite3"
            if not path.exists():
                return 0
            lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = lite.execute(
                    "SELECT position FROM projection_positions WHERE name = 'users'"
                ).fetchone()
            finally:
                lite.close()
    except (psycopg.Error, sqlite3.Error):
        return 0
    return int(row[0]) if row else 0


def test_a_rebuild_killed_with_sigkill_leaves_the_live_model_serving_and_a_rerun_completes(
    container: Container, settings: Settings
) -> None:
    ids = populate(container)
    catch_up(container)
    live = dump(container)
    head = container.app.head
    command = [sys.executable, "-c", "from interfaces.cli import main; main()"]
    with live_tables_held(settings):
        process = subprocess.Popen(
            [*command, "projections", "rebuild", "users"],
            cwd=ROOT,
            env=cli_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            # Replayed to the head, now waiting for the live tables to switch.
            while shadow_position(settings) < head:
                assert process.poll() is None, "the rebuild ended before it could be killed"
                assert time.monotonic() < deadline, "the rebuild made no progress"
                time.sleep(0.02)
            # The live model keeps answering meanwhile: a switch waiting for the live
            # tables gives way to readers within a second (PostgreSQL's lock queue).
            asked = time.monotonic()
            profile = container.queries.users.public_profile(ids[0])
            assert profile is not None and profile.username == "user0"
            assert time.monotonic() - asked < 10
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert dump(container) == live
    assert shadow_position(settings) == head  # the shadow survived, for the rerun

    rerun = subprocess.run(
        [*command, "projections", "rebuild", "users"],
        cwd=ROOT,
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed at {head}" in rerun.stdout
    assert dump(container) == live
    assert shadow_position(settings) == 0
