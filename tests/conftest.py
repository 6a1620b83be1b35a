"""Fixtures shared by every test: settings on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from tests.support.postgres import PostgresCluster, start_cluster, stop_cluster

hypothesis_settings.register_profile("default", max_examples=40, deadline=None)
hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKENDS = ["sqlite", "postgres"]

# Cheap hashing in tests: the parameters are settings; production keeps the defaults.
FAST_HASHING = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 1024, "argon2_parallelism": 1}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole run."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def _schema_for_test(cluster: PostgresCluster) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conninfo = cluster.url
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def make_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, **overrides: object
) -> Settings:
    """Settings for one test: its own data dir, and its own schema on PostgreSQL."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "cookie_secure": False,
        "log_format": "text",
        **FAST_HASHING,
        **overrides,
    }
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        schema_iter = _schema_for_test(cluster)
        values["database_url"] = cluster.url
        values["database_schema"] = next(schema_iter)
        request.addfinalizer(lambda: next(schema_iter, None))
    # model_validate reads no environment and no .env: a test sees only its own values.
    return Settings.model_validate(values)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    value: str = request.param
    return value


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Fresh settings on the backend under test."""
    return make_settings(backend, tmp_path, request)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    """A container without running projectors (tests drive them)."""
    built = build(settings)
    try:
        yield built
    finally:
        built.close()


def catch_up(container: Container) -> None:
    """Run every projector to the head of the log."""
    for runner in container.runners():
        runner.catch_up()
