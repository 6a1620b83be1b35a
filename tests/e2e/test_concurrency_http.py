"""Parallel duplicate registrations over a real server: exactly one wins, the rest are 409."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import httpx
import pytest

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from tests.support.accounts import API, PASSWORD
from tests.support.live_server import live_server

pytestmark = pytest.mark.slow

PARALLEL = 48


def _burst(client: httpx.Client, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """Send every registration at the same instant, one thread each."""
    barrier = threading.Barrier(len(bodies))

    def send(body: dict[str, str]) -> httpx.Response:
        barrier.wait()
        return client.post(f"{API}/auth/register", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_48_parallel_registrations_of_one_username_give_one_201_and_47_conflicts(
    settings: Settings,
) -> None:
    limits = httpx.Limits(max_connections=PARALLEL, max_keepalive_connections=PARALLEL)
    with (
        live_server(Combined(settings)) as server,
        httpx.Client(base_url=server.base_url, limits=limits, timeout=60) as client,
    ):
        same_name = [
            {"username": "contested", "email": f"u{i}@example.com", "password": PASSWORD}
            for i in range(PARALLEL)
        ]
        responses = _burst(client, same_name)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (PARALLEL - 1), statuses
        for refused in (r for r in responses if r.status_code == 409):
            assert refused.json()["error"]["code"] == "conflict"
            assert refused.json()["error"]["field"] == "username"
        winner = next(r for r in responses if r.status_code == 201)
        user_id = UUID(winner.json()["id"])
        profile = client.get(
            f"{API}/users/{user_id}",
            headers={"X-Min-Position": winner.headers["x-event-position"]},
        )
        assert profile.json()["username"] == "contested"

        # The same holds for emails, whatever their case.
        same_email = [
            {
                "username": f"user{i}",
                "email": f"Shared@Example.{'com' if i % 2 else 'COM'}",
                "password": PASSWORD,
            }
            for i in range(16)
        ]
        email_responses = _burst(client, same_email)
        statuses = sorted(r.status_code for r in email_responses)
        assert statuses == [201] + [409] * 15, statuses

        # The losers stored nothing: the names and emails they tried are still free.
        lost_email = next(
            b["email"] for b, r in zip(same_name, responses, strict=True) if r.status_code == 409
        )
        lost_name = next(
            b["username"]
            for b, r in zip(same_email, email_responses, strict=True)
            if r.status_code == 409
        )
        retry = {"username": lost_name, "email": lost_email, "password": PASSWORD}
        assert client.post(f"{API}/auth/register", json=retry).status_code == 201
