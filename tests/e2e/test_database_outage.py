"""A read-model connection the database dropped costs one 503, never a 500."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from interfaces.http.combined import Combined
from tests.conftest import make_settings
from tests.support.accounts import API, register


def test_queries_recover_after_the_database_drops_every_connection(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings("postgres", tmp_path, request)
    with TestClient(Combined(settings), raise_server_exceptions=False) as client:
        user_id = register(client, "alice")
        # Projected first: what follows is about the queries' connections, and the
        # projectors, whose connections die too, back off a second before retrying.
        deadline = time.monotonic() + 10
        while client.get(f"{API}/users/{user_id}").status_code != 200:
            assert time.monotonic() < deadline, "alice was never projected"
            time.sleep(0.02)

        # What a database restart or a failover does to every open connection.
        with psycopg.connect(settings.database_url or "", autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"theplaylist-readmodels-{settings.database_schema}"[:63],),
            ).fetchall()
        assert killed, "the query service held no read-model connection"

        statuses = [client.get(f"{API}/users/{user_id}") for _ in range(3)]
        assert all(s.status_code != 500 for s in statuses), [s.text for s in statuses]
        lost = [s for s in statuses if s.status_code == 503]
        assert len(lost) <= 1
        for answer in lost:
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert answer.headers["Retry-After"] == "1"
        assert statuses[-1].status_code == 200, statuses[-1].text
        assert statuses[-1].json()["username"] == "alice"
