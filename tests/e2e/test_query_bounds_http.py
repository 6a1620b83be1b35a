"""Query parameters past what the service can hold answer 422, never 500, on both backends.

Found by fuzzing: instants near year 1 or 9999 overflowed ``astimezone`` and the
bucket arithmetic of the stats, and positions past 64 bits overflowed SQLite's
driver in the audit reads. Values just inside the bounds must still answer 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from tests.support.catalog import add_track
from tests.support.clients import container_of

PASSWORD = "correct horse battery"

# Parse as datetimes, but fall outside 1970..9000 once read as UTC (naive means UTC).
EXTREME_INSTANTS = [
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:30:00+01:00",
    "9001-01-01T00:00:00Z",
    "9000-12-31T23:00:00-01:00",
]
# Past the signed 64-bit position and version columns of both backends.
HUGE_POSITIONS = [2**63, 2**70]
MAX_POSITION = 2**63 - 1


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default, with its projectors (the stats read the tracks read model)."""
    with TestClient(Combined(settings)) as test_client:
        yield test_client


def auditor(client: TestClient) -> tuple[UUID, dict[str, str]]:
    """A fresh user holding the auditor role: their id and an Authorization header."""
    registered = client.post(
        "/api/v1/auth/register",
        json={"username": "auditor", "email": "auditor@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    container_of(client).app.grant_role("auditor", "auditor")
    token = client.post("/api/v1/auth/token", data={"username": "auditor", "password": PASSWORD})
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return UUID(registered.json()["id"]), headers


def assert_invalid(response: httpx.Response, field: str) -> None:
    """A 422 ``validation_error`` in the envelope of API.md, naming ``field``."""
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert [f["field"] for f in error["fields"]] == [f"query.{field}"]


def test_track_plays_refuse_instants_out_of_range_and_keep_those_inside(
    client: TestClient,
) -> None:
    user_id, _headers = auditor(client)
    container = container_of(client)
    track = add_track(container, user_id)
    plays = f"/api/v1/stats/tracks/{track}/plays"
    # The track must be in the read model, or every answer below would be a 404.
    caught_up = {"X-Min-Position": str(container.app.head)}
    assert client.get(plays, headers=caught_up).status_code == 200

    for value in EXTREME_INSTANTS:
        for field in ("from", "to"):
            assert_invalid(client.get(plays, params={field: value}), field)
        both = {"from": "2026-01-01T00:00:00Z", "to": value}
        assert_invalid(client.get(plays, params=both), "to")

    def sane(**params: Any) -> dict[str, Any]:
        response = client.get(plays, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    # The default window may start before 1970: only the given instants are bounded.
    earliest = sane(to="1970-01-01T00:00:00Z")
    assert earliest["from"] == "1969-12-02T00:00:00+00:00" and earliest["total"] == 0
    first_hours = sane(**{"from": "1970-01-01T00:00:00Z", "to": "1970-01-01T03:00:00"})
    assert len(first_hours["items"]) == 1 and first_hours["to"] == "1970-01-01T03:00:00+00:00"
    last_year = sane(
        bucket="month", **{"from": "9000-01-01T00:00:00Z", "to": "9000-12-31T23:59:59.999999Z"}
    )
    assert len(last_year["items"]) == 12
    assert last_year["items"][-1]["start"] == "9000-12-01T00:00:00+00:00"
    # A zone other than UTC still means the same instant, answered in UTC.
    shifted = sane(**{"from": "2026-01-01T02:00:00+02:00", "to": "2025-12-31T23:00:00-02:00"})
    assert (shifted["from"], shifted["to"]) == (
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T01:00:00+00:00",
    )


def test_audit_reads_refuse_instants_out_of_range_and_keep_those_inside(
    client: TestClient,
) -> None:
    user_id, headers = auditor(client)
    state = f"/api/v1/audit/aggregates/{user_id}/state"
    for value in EXTREME_INSTANTS:
        for field in ("from", "to"):
            response = client.get("/api/v1/audit/events", params={field: value}, headers=headers)
            assert_invalid(response, field)
        assert_invalid(client.get(state, params={"at": value}, headers=headers), "at")

    everything = client.get(
        "/api/v1/audit/events",
        params={"from": "1970-01-01T00:00:00Z", "to": "9000-12-31T23:59:59.999999"},
        headers=headers,
    )
    assert everything.status_code == 200, everything.text
    assert everything.json()["items"]
    latest = client.get(state, params={"at": "9000-12-31T23:59:59Z"}, headers=headers)
    assert latest.status_code == 200, latest.text
    assert latest.json()["aggregate_id"] == str(user_id)
    before = client.get(state, params={"at": "1970-01-01T00:00:00Z"}, headers=headers)
    assert before.status_code == 404, before.text


def test_audit_reads_refuse_positions_past_64_bits_and_keep_the_largest(
    client: TestClient,
) -> None:
    user_id, headers = auditor(client)
    events = "/api/v1/audit/events"
    history = f"/api/v1/audit/aggregates/{user_id}/events"
    state = f"/api/v1/audit/aggregates/{user_id}/state"
    for huge in HUGE_POSITIONS:
        assert_invalid(client.get(events, params={"after": huge}, headers=headers), "after")
        assert_invalid(client.get(history, params={"after": huge}, headers=headers), "after")
        assert_invalid(client.get(state, params={"version": huge}, headers=headers), "version")
        anchored = {"anchor_position": huge, "anchor_hash": "0" * 64}
        response = client.get("/api/v1/audit/verify", params=anchored, headers=headers)
        assert_invalid(response, "anchor_position")

    for path in (events, history):
        page = client.get(path, params={"after": MAX_POSITION}, headers=headers)
        assert page.status_code == 200, page.text
        assert page.json() == {"items": [], "next_cursor": None}
    newest = client.get(state, params={"version": MAX_POSITION}, headers=headers)
    assert newest.status_code == 200, newest.text
    assert newest.json() == client.get(state, headers=headers).json()
    anchored = {"anchor_position": MAX_POSITION, "anchor_hash": "0" * 64}
    report = client.get("/api/v1/audit/verify", params=anchored, headers=headers)
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is False
