"""The services and the projectors as separate processes over one database.

Each process is the installed ``theplaylist`` command, configured only through
``THEPLAYLIST_*`` environment variables, as in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from domain.users import User
from infrastructure.bootstrap import Container, build
from infrastructure.database import create_database_engine
from infrastructure.settings import Settings
from projections.runner import ProjectionRunner, create_read_models
from tests.conftest import make_settings
from tests.support.accounts import API, PASSWORD
from tests.support.postgres import free_port
from tests.support.processes import settings_env, started

pytestmark = pytest.mark.slow


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll another process's progress (there is nothing to be woken by across processes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_the_services_run_as_separate_processes_over_one_postgres_database(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings("postgres", tmp_path, request)
    env = settings_env(settings, min_position_wait_seconds=30)
    commands_port, queries_port = free_port(), free_port()
    with (
        started(["projections", "run"], env, tmp_path, name="projector") as projector,
        started(
            ["serve-commands", "--port", str(commands_port)],
            env,
            tmp_path,
            port=commands_port,
            name="commands",
            wait=False,
        ) as commands_process,
        started(
            ["serve-queries", "--port", str(queries_port)],
            env,
            tmp_path,
            port=queries_port,
            name="queries",
            wait=False,
        ) as queries_process,
        httpx.Client(base_url=commands_process.base_url or "", timeout=60) as commands,
        httpx.Client(base_url=queries_process.base_url or "", timeout=60) as queries,
    ):
        commands_process.wait_healthy()
        queries_process.wait_healthy()
        for client in (commands, queries):
            assert client.get("/ready").json()["status"] == "ready"
            assert client.get("/openapi.json").status_code == 200

        created = commands.post(
            f"{API}/auth/register",
            json={"username": "alice", "email": "Alice@Example.com", "password": PASSWORD},
        )
        assert created.status_code == 201
        user_id = created.json()["id"]
        login = commands.post(
            f"{API}/auth/login",
            data={"username": "alice", "password": PASSWORD},
            headers={"Origin": commands_process.base_url or ""},
        )
        assert login.status_code == 200
        assert commands.get(f"{API}/auth/session").json()["user"]["id"] == user_id
        token = commands.post(
            f"{API}/auth/token", data={"username": "alice", "password": PASSWORD}
        ).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}

        # Read-your-writes across processes: the query service waits for the projector.
        me = queries.get(
            f"{API}/me", headers={**bearer, "X-Min-Position": login.headers["x-event-position"]}
        )
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "alice@example.com"
        for name in ("alicia", "alice2", "ali"):
            renamed = commands.patch(f"{API}/users/me", json={"username": name}, headers=bearer)
            assert renamed.status_code == 200
            profile = queries.get(
                f"{API}/users/{user_id}",
                headers={"X-Min-Position": renamed.headers["x-event-position"]},
            )
            assert profile.json()["username"] == name

        # The command service serves no queries, the query service no commands.
        assert commands.get(f"{API}/users/{user_id}").status_code in (404, 405)
        assert queries.post(f"{API}/auth/register", json={}).status_code in (404, 405)
        assert projector.process.poll() is None

    # SIGTERM is a clean shutdown for every one of them (uvicorn then exits by the signal).
    assert projector.process.returncode == 0, projector.log()
    for child in (commands_process, queries_process):
        assert child.process.returncode in (0, -15), child.log()
        assert "Application shutdown complete" in child.log()


def _tables_of(container: Container, engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row of every projector, in primary-key order."""
    rows = {}
    with engine.connect() as conn:
        for projector in container.projectors:
            for table in projector.tables:
                order = list(table.primary_key.columns) or list(table.columns)
                rows[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return rows


def _write_history(container: Container, users: int, toggles: int) -> None:
    """Registrations interleaved with bulk role changes, sessions, renames and a deletion.

    Each registration sits between thousands of cheap events, so most batches of a
    replay would break on a duplicate insert if a batch were ever applied twice.
    """
    app = container.app
    ids = []
    for i in range(users):
        user_id = app.register_user(f"user{i}", f"user{i}@example.com", PASSWORD).value
        ids.append(user_id)
        user: User = app.repository.get(user_id)
        for _ in range(toggles):
            user.grant_role("admin")
            user.revoke_role("admin")
        if i % 3 == 0:
            user.grant_role("auditor")
        app.save(user)
        if i % 4 == 0:
            app.open_session(f"user{i}", PASSWORD, "tests")
        if i % 5 == 0:
            app.change_identity(user_id, f"renamed{i}", f"new{i}@example.com")
    app.delete_user(ids[-1])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_projector_killed_mid_batch_resumes_and_its_read_model_equals_a_fresh_rebuild(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(backend, tmp_path, request)
    container = build(settings)
    try:
        _write_history(container, users=24, toggles=20)
        head = container.app.head
        names = [p.name for p in container.projectors]
        positions = container.queries.positions
        env = settings_env(settings, projection_batch_size=5, projection_poll_interval_seconds=0.01)

        with started(["projections", "run"], env, tmp_path, name="projector-1") as first:
            _wait_for(lambda: positions.positions().get("users", 0) > 0, "a first batch")
            assert first.kill() == -9
        killed_at = positions.positions()
        assert 0 < killed_at["users"] < head, (killed_at, head)

        with started(["projections", "run"], env, tmp_path, name="projector-2") as second:
            _wait_for(
                lambda: all(positions.positions().get(n, 0) == head for n in names),
                "the restarted projector to catch up",
            )
            assert second.process.poll() is None, second.log()

        fresh: Settings = make_settings(backend, tmp_path / "rebuild", request)
        fresh_engine = create_database_engine(fresh, "readmodels")
        try:
            create_read_models(fresh_engine)
            for projector in container.projectors:
                ProjectionRunner(
                    projector, fresh_engine, container.app.recorder, container.app.mapper
                ).catch_up()
            rebuilt = _tables_of(container, fresh_engine)
        finally:
            fresh_engine.dispose()
        resumed = _tables_of(container, container.read_engine)
        assert len(resumed["users"]) == 24
        assert resumed == rebuilt
    finally:
        container.close()
