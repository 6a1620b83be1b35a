"""Erasure: after DELETE /users/me the email and username are unrecoverable, on both backends.

Recoverable means from any byte of the store: the embedded default's files
(databases, write-ahead logs, journals) and, on PostgreSQL, every file of the
database's tables (WAL segments excepted; see docs/erasure.md). The user's
vault key is looked for too: with it gone, the sealed copies in the events are
noise. Logs are searched as well.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from infrastructure.vault import personal_data_keys
from interfaces.http.combined import Combined
from tests.conftest import catch_up
from tests.support.audio import audio
from tests.support.postgres import PostgresCluster

PASSWORD = "correct horse battery"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP; projections are driven by the test."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def files_holding(root: Path, secrets: dict[str, bytes]) -> dict[str, list[str]]:
    """For each secret, the files under ``root`` whose bytes contain it."""
    found: dict[str, list[str]] = {name: [] for name in secrets}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for name, secret in secrets.items():
            if secret in data:
                found[name].append(str(path.relative_to(root)))
    return {name: paths for name, paths in found.items() if paths}


def erased_soon(
    root: Path, secrets: dict[str, bytes], within: float = 10.0
) -> dict[str, list[str]]:
    """``files_holding`` once the running server had its moment to erase, or what still holds.

    A deletion is visible as soon as the projector's batch commits; the log
    holding the old page images is truncated right after, in that thread.
    """
    deadline = time.monotonic() + within
    while (found := files_holding(root, secrets)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def postgres_files(settings: Settings, cluster: PostgresCluster) -> Path:
    """The directory of the database's files, after a checkpoint flushed every page."""
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return cluster.directory / "data" / "base" / str(row[0])


def test_a_deleted_account_leaves_no_readable_personal_data(
    client: TestClient,
    settings: Settings,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    container: Container = client.app.container  # type: ignore[attr-defined]
    tag = uuid.uuid4().hex[:10]
    name, first_email, second_email = f"erasable{tag}", f"first{tag}@x.org", f"second{tag}@x.org"

    # An account with some history: a key-replayed registration, sessions, a changed
    # email, public content.
    registered = client.post(
        "/api/v1/auth/register",
        json={"username": name, "email": first_email, "password": PASSWORD},
        headers={"Idempotency-Key": f"register-{tag}"},
    )
    assert registered.status_code == 201
    user_id = registered.json()["id"]
    signed_in = client.post(
        "/api/v1/auth/token",
        data={"username": name, "password": PASSWORD},
        headers={"Idempotency-Key": f"token-{tag}"},
    )
    auth = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    changed = client.patch("/api/v1/users/me", json={"email": second_email}, headers=auth)
    assert changed.status_code == 200
    playlist = client.post(
        "/api/v1/playlists",
        json={"name": "road trip", "description": "songs", "visibility": "public"},
        headers=auth,
    ).json()["id"]
    track = client.post(
        "/api/v1/tracks",
        files={"file": ("tone.wav", audio("tone.wav"), "audio/wav")},
        data={"title": "a tone"},
        headers=auth,
    )
    assert track.status_code == 201, track.text
    catch_up(container)
    assert client.get("/api/v1/me", headers=auth).json()["email"] == second_email
    with container.vault_engine.connect() as conn:
        key = conn.execute(
            select(personal_data_keys.c.key).where(
                personal_data_keys.c.subject_id == uuid.UUID(user_id)
            )
        ).scalar_one()

    deleted = client.delete(
        "/api/v1/users/me", headers={**auth, "Idempotency-Key": f"delete-{tag}"}
    )
    assert deleted.status_code == 204
    catch_up(container)

    # The public content stays, attributed to a deleted user.
    profile = client.get(f"/api/v1/users/{user_id}").json()
    assert (profile["username"], profile["deleted"]) == ("deleted user", True)
    shown = client.get(f"/api/v1/playlists/{playlist}").json()
    assert shown["owner"] == {"id": user_id, "username": "deleted user"}
    assert client.get(f"/api/v1/tracks/{track.json()['id']}").json()["uploader_id"] == user_id

    # The log keeps its shape: still intact, the user's events still there, sealed.
    assert container.audit.verify().ok
    history = container.audit.events(aggregate_id=uuid.UUID(user_id), limit=100).items
    assert [e.type for e in history][-1] == "User.Deleted"
    assert first_email not in str([e.data for e in history])

    secrets: dict[str, bytes] = {
        "first email": first_email.encode(),
        "second email": second_email.encode(),
        "vault key": bytes(key),
    }
    if settings.uses_postgres:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        assert files_holding(postgres_files(settings, cluster), secrets) == {}
    else:
        # The username too: nothing of the embedded default keeps it (WAL included).
        secrets["username"] = name.encode()
        assert files_holding(settings.data_dir, secrets) == {}
    logged: Any = caplog.text
    assert name not in logged and first_email not in logged and second_email not in logged


def test_the_running_embedded_default_erases_and_its_closed_files_hold_nothing(
    settings: Settings,
) -> None:
    if settings.uses_postgres:
        pytest.skip("the files of the embedded default are SQLite's")
    tag = uuid.uuid4().hex[:10]
    name, email = f"gone{tag}", f"gone{tag}@x.org"
    # Projectors running in their threads, as `theplaylist serve` runs them.
    with TestClient(Combined(settings, run_projections=True)) as client:
        user_id = client.post(
            "/api/v1/auth/register", json={"username": name, "email": email, "password": PASSWORD}
        ).json()["id"]
        token = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        position = client.delete("/api/v1/users/me", headers=auth).headers["x-event-position"]
        profile = client.get(f"/api/v1/users/{user_id}", headers={"X-Min-Position": position})
        assert profile.json()["username"] == "deleted user"
        secrets = {"email": email.encode(), "username": name.encode()}
        assert erased_soon(settings.data_dir, secrets) == {}
    assert files_holding(settings.data_dir, secrets) == {}


def test_database_errors_do_not_carry_the_values_of_their_statement(
    container: Container,
) -> None:
    # Such errors end up in logs (an unhandled error, a failed projector batch).
    with pytest.raises(DBAPIError) as raised, container.read_engine.connect() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (:v)"), {"v": "private@x.org"})
    assert "private@x.org" not in str(raised.value)
