"""The audit API (auditors only) and the ``audit`` commands, on both backends."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from typer.testing import CliRunner

from infrastructure.settings import Settings
from interfaces.cli import cli
from interfaces.http.combined import Combined

PASSWORD = "correct horse battery"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP; the audit reads need no projector."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def register(client: TestClient, username: str) -> str:
    """A new account's id."""
    response = client.post(
        "/api/v1/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def bearer(client: TestClient, username: str) -> dict[str, str]:
    """An Authorization header for the user (roles as of now)."""
    response = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def auditor(client: TestClient, username: str = "auditor") -> dict[str, str]:
    """Headers of a fresh user holding the auditor role."""
    register(client, username)
    container = client.app.container  # type: ignore[attr-defined]
    container.app.grant_role(username, "auditor")
    return bearer(client, username)


def every_event(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """All pages of ``/audit/events``, following the cursors."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get(
            "/api/v1/audit/events", params={**params, "after": after}, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        after = int(page["next_cursor"])


AUDIT_PATHS = [
    "/api/v1/audit/events",
    "/api/v1/audit/aggregates/00000000-0000-0000-0000-000000000001/events",
    "/api/v1/audit/aggregates/00000000-0000-0000-0000-000000000001/state",
    "/api/v1/audit/verify",
]


def test_audit_needs_the_auditor_role(client: TestClient) -> None:
    register(client, "plain")
    plain = bearer(client, "plain")
    for path in AUDIT_PATHS:
        anonymous = client.get(path)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        forbidden = client.get(path, headers=plain)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "forbidden"


def test_the_log_is_paginated_by_position_and_keeps_personal_data_sealed(
    client: TestClient,
) -> None:
    headers = auditor(client)
    alice = register(client, "alice")
    events = every_event(client, headers, limit=2)
    positions = [e["position"] for e in events]
    assert positions == list(range(1, client.app.container.app.head + 1))  # type: ignore[attr-defined]
    registered = next(e for e in events if e["aggregate_id"] == alice and e["version"] == 1)
    assert registered["type"] == "User.Registered"
    assert registered["topic"] == "domain.users:User.Registered"
    assert registered["data"]["sealed_email"].startswith("v1.")
    assert "alice@example.com" not in json.dumps(events)
    assert all(len(e["hash"]) == 64 and e["recorded_at"] for e in events)


def test_the_log_filters_by_type_aggregate_and_time(client: TestClient) -> None:
    headers = auditor(client)
    bob = register(client, "bob")
    register(client, "carol")
    everything = every_event(client, headers)
    registered = every_event(client, headers, type="User.Registered")
    assert [e["position"] for e in registered] == [
        e["position"] for e in everything if e["type"] == "User.Registered"
    ]
    assert len(registered) == 3
    assert every_event(client, headers, type="user.registered") == []
    bobs = every_event(client, headers, aggregate_id=bob)
    assert [e["version"] for e in bobs] == [1] and bobs[0]["aggregate_id"] == bob
    middle = everything[len(everything) // 2]["recorded_at"]
    later = every_event(client, headers, **{"from": middle})
    assert later == [e for e in everything if e["recorded_at"] >= middle]
    earlier = every_event(client, headers, to=middle)
    assert earlier == [e for e in everything if e["recorded_at"] <= middle]
    backwards = client.get(
        "/api/v1/audit/events",
        params={"from": middle, "to": "2000-01-01T00:00:00Z"},
        headers=headers,
    )
    assert backwards.status_code == 422
    too_many = client.get("/api/v1/audit/events", params={"limit": 10_000}, headers=headers)
    assert too_many.status_code == 422


def test_an_aggregate_can_be_seen_as_of_a_version_or_an_instant(client: TestClient) -> None:
    headers = auditor(client)
    dave = register(client, "dave")
    container = client.app.container  # type: ignore[attr-defined]
    container.app.change_identity(UUID(dave), "david", None)
    history = client.get(f"/api/v1/audit/aggregates/{dave}/events", headers=headers).json()
    assert [e["version"] for e in history["items"]] == [1, 2]
    first = client.get(
        f"/api/v1/audit/aggregates/{dave}/state", params={"version": 1}, headers=headers
    ).json()
    now = client.get(f"/api/v1/audit/aggregates/{dave}/state", headers=headers).json()
    assert (first["version"], now["version"]) == (1, 2)
    assert first["type"] == "User" and first["aggregate_id"] == dave
    assert first["state"]["sealed_username"] != now["state"]["sealed_username"]
    assert first["state"]["sealed_username"].startswith("v1.")
    at_first = client.get(
        f"/api/v1/audit/aggregates/{dave}/state",
        params={"at": history["items"][0]["recorded_at"]},
        headers=headers,
    ).json()
    assert at_first == first
    before = client.get(
        f"/api/v1/audit/aggregates/{dave}/state",
        params={"at": "2000-01-01T00:00:00Z"},
        headers=headers,
    )
    assert before.status_code == 404
    both = client.get(
        f"/api/v1/audit/aggregates/{dave}/state",
        params={"at": "2000-01-01T00:00:00Z", "version": 1},
        headers=headers,
    )
    assert both.status_code == 422
    unknown = client.get(AUDIT_PATHS[1], headers=headers)
    assert unknown.status_code == 404


def test_verify_reports_an_intact_chain_with_its_head(client: TestClient) -> None:
    headers = auditor(client)
    report = client.get("/api/v1/audit/verify", headers=headers).json()
    assert report["ok"] is True and report["first_broken_position"] is None
    assert report["checked"] == report["head_position"] > 0
    anchored = client.get(
        "/api/v1/audit/verify",
        params={"anchor_position": report["head_position"], "anchor_hash": report["head_hash"]},
        headers=headers,
    ).json()
    assert anchored["ok"] is True
    wrong = client.get(
        "/api/v1/audit/verify",
        params={"anchor_position": 1, "anchor_hash": "0" * 64},
        headers=headers,
    ).json()
    assert wrong["ok"] is False and wrong["first_broken_position"] == 1
    half = client.get("/api/v1/audit/verify", params={"anchor_position": 1}, headers=headers)
    assert half.status_code == 422


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points the command line at this test's stores."""
    env = {
        "THEPLAYLIST_DATA_DIR": str(settings.data_dir),
        "THEPLAYLIST_LOG_FORMAT": "text",
        "THEPLAYLIST_COOKIE_SECURE": "false",
        **extra,
    }
    if settings.database_url is not None:
        env["THEPLAYLIST_DATABASE_URL"] = settings.database_url
        env["THEPLAYLIST_DATABASE_SCHEMA"] = settings.database_schema
    return env


def _tamper(settings: Settings, position: int) -> None:
    if settings.database_url is not None:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {}.theplaylist_events SET state = state || '\\x20'::bytea "
                    "WHERE notification_id = %s"
                ).format(sql.Identifier(settings.database_schema)),
                (position,),
            )
        return
    lite = sqlite3.connect(settings.data_dir / "events.sqlite3", isolation_level=None)
    try:
        lite.execute("UPDATE stored_events SET state = state || x'20' WHERE rowid = ?", (position,))
    finally:
        lite.close()


def test_the_cli_exports_the_log_as_json_lines_and_verifies_it(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    for name in ("erin", "frank", "grace"):
        register(client, name)
    head = client.app.container.app.head  # type: ignore[attr-defined]
    runner = CliRunner()
    out = tmp_path / "log.jsonl"
    env = cli_env(settings, THEPLAYLIST_AUDIT_BATCH_SIZE="4")
    exported = runner.invoke(cli, ["audit", "export", "--out", str(out)], env=env)
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["position"] for line in lines] == list(range(1, head + 1))
    assert {"aggregate_id", "version", "type", "recorded_at", "hash", "data"} <= lines[0].keys()
    assert "erin@example.com" not in out.read_text()

    verified = runner.invoke(cli, ["audit", "verify", "--json"], env=env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["checked"] == head

    _tamper(settings, 2)
    broken = runner.invoke(cli, ["audit", "verify", "--json"], env=env)
    assert broken.exit_code == 1
    assert json.loads(broken.stdout.strip().splitlines()[-1])["first_broken_position"] == 2
