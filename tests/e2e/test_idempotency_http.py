"""``Idempotency-Key``: retries replay the first response and append nothing, on both backends."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from infrastructure.bootstrap import Container
from infrastructure.idempotency import Outcome, StoredResponse
from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from interfaces.http.idempotency import IdempotencyMiddleware, _Spool
from tests.support.audio import unique_wav
from tests.support.clients import raw_exchange

PASSWORD = "correct horse battery"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def head(client: TestClient) -> int:
    """The log's last position."""
    container: Container = client.app.container  # type: ignore[attr-defined]
    return container.app.head


def register_body(name: str) -> dict[str, str]:
    """A registration of ``name``."""
    return {"username": name, "email": f"{name}@example.com", "password": PASSWORD}


def token(client: TestClient, name: str) -> dict[str, str]:
    """A bearer header for a new user."""
    assert client.post("/api/v1/auth/register", json=register_body(name)).status_code == 201
    response = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_retried_command_returns_the_first_response_and_appends_nothing(
    client: TestClient,
) -> None:
    key = {"Idempotency-Key": "register-alice-1"}
    first = client.post("/api/v1/auth/register", json=register_body("alice"), headers=key)
    assert first.status_code == 201
    reached = head(client)
    again = client.post("/api/v1/auth/register", json=register_body("alice"), headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["x-event-position"] == first.headers["x-event-position"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert head(client) == reached


def test_a_key_reused_for_a_different_request_is_refused_and_stores_nothing(
    client: TestClient,
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    assert client.post("/api/v1/auth/register", json=register_body("bob"), headers=key).is_success
    reached = head(client)
    other = client.post("/api/v1/auth/register", json=register_body("carol"), headers=key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert head(client) == reached


def test_keys_are_scoped_per_user(client: TestClient) -> None:
    dave, erin = token(client, "dave"), token(client, "erin")
    key = {"Idempotency-Key": "rename"}
    for headers, name in ((dave, "david"), (erin, "erinn")):
        response = client.patch(
            "/api/v1/users/me", json={"username": name}, headers={**headers, **key}
        )
        assert response.status_code == 200
        assert "idempotent-replayed" not in response.headers
    retry = client.patch("/api/v1/users/me", json={"username": "david"}, headers={**dave, **key})
    assert retry.headers["idempotent-replayed"] == "true"


def test_concurrent_requests_with_one_key_run_once_and_all_get_its_response(
    client: TestClient,
) -> None:
    before = head(client)
    barrier = threading.Barrier(8)

    def register(_: int) -> tuple[int, Any, str]:
        barrier.wait()
        response = client.post(
            "/api/v1/auth/register",
            json=register_body("frank"),
            headers={"Idempotency-Key": "concurrent-frank"},
        )
        return response.status_code, response.json(), response.headers["x-event-position"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(register, range(8)))
    assert {status for status, _, _ in outcomes} == {201}
    assert len({body["id"] for _, body, _ in outcomes}) == 1
    assert len({position for _, _, position in outcomes}) == 1
    # One registration: the user, its username claim and its email claim.
    assert head(client) == before + 3


def multipart(boundary: str, fields: dict[str, str], filename: str, data: bytes) -> bytes:
    """A ``multipart/form-data`` body with this boundary."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_a_retried_upload_is_the_same_request_whatever_boundary_the_client_draws(
    client: TestClient,
) -> None:
    helen = token(client, "helen")
    wav = unique_wav(7)

    def send(boundary: str, title: str) -> Any:
        return client.post(
            "/api/v1/tracks",
            content=multipart(boundary, {"title": title}, "tone.wav", wav),
            headers={
                **helen,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Idempotency-Key": "upload-tone",
            },
        )

    first = send("first-try-4f1c", "Tone")
    assert first.status_code == 201
    reached = head(client)
    again = send("retry-9b7e2d0a", "Tone")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = send("retry-9b7e2d0a", "Another title")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert head(client) == reached


@given(cuts=st.lists(st.integers(0, 400), max_size=6), boundary=st.sampled_from(["b1", "zz-9f"]))
@hyp_settings(max_examples=60, deadline=None)
def test_a_multipart_fingerprint_depends_neither_on_the_boundary_nor_on_the_chunking(
    cuts: list[int], boundary: str
) -> None:
    def digest(boundary: str, cuts: list[int]) -> bytes:
        body = multipart(boundary, {"title": "Tone"}, "tone.wav", unique_wav(3, milliseconds=20))
        spool = _Spool(boundary.encode())
        edges = [0, *sorted(cuts), len(body)]
        for start, end in itertools.pairwise(edges):
            asyncio.run(spool.write(body[start:end]))
        return spool.digest()

    assert digest(boundary, cuts) == digest("reference-boundary", [])


def test_the_express_lanes_commands_are_idempotent_too(client: TestClient) -> None:
    # Plays and reactions run in the command service's express lane, inside the
    # idempotency middleware: a retried play is replayed, not counted twice.
    ivan = token(client, "ivan")
    boundary = "lane-boundary"
    uploaded = client.post(
        "/api/v1/tracks",
        content=multipart(boundary, {"title": "Lane"}, "tone.wav", unique_wav(11)),
        headers={**ivan, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert uploaded.status_code == 201
    url = f"/api/v1/tracks/{uploaded.json()['id']}/plays"
    headers = {**ivan, "Idempotency-Key": "play-once", "X-Request-ID": "lane-request-1"}
    first = client.post(url, headers=headers)
    assert first.status_code == 201
    assert first.headers["x-request-id"] == "lane-request-1"
    reached = head(client)
    again = client.post(url, headers=headers)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert head(client) == reached


def test_an_invalid_key_is_refused(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/register", json=register_body("gina"), headers={"Idempotency-Key": "a b"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# -- the middleware around a controllable app (the store and the tokens are real) --


class Gate:
    """An ASGI app that counts its runs and answers only once opened."""

    def __init__(self, statuses: list[int]) -> None:
        self.runs = 0
        self.statuses = statuses
        self.opened = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.runs += 1
        status = self.statuses[min(self.runs, len(self.statuses)) - 1]
        body = (await receive())["body"]
        await self.opened.wait()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body + str(self.runs).encode()})


async def call(middleware: IdempotencyMiddleware, container: Container, body: bytes) -> Any:
    """One POST through the middleware; its status, body and headers."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/things",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"gate-key"), (b"content-type", b"text/plain")],
        "app": SimpleNamespace(state=SimpleNamespace(container=container)),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await middleware(scope, receive, send)
    return sent[0]["status"], sent[1]["body"], dict(sent[0]["headers"])


def test_a_concurrent_duplicate_waits_for_the_first_and_gets_its_response(
    container: Container,
) -> None:
    gate = Gate([201])
    middleware = IdempotencyMiddleware(gate)

    async def scenario() -> tuple[Any, Any]:
        first = asyncio.create_task(call(middleware, container, b"x"))
        while gate.runs == 0:
            await asyncio.sleep(0.001)
        second = asyncio.create_task(call(middleware, container, b"x"))
        await asyncio.sleep(0.05)  # the duplicate is now waiting on the pending key
        assert not second.done()
        gate.opened.set()
        return await first, await second

    first, second = asyncio.run(scenario())
    assert gate.runs == 1
    assert first[:2] == second[:2] == (201, b"x1")
    assert second[2][b"idempotent-replayed"] == b"true"


def test_a_failed_first_attempt_is_not_remembered(container: Container) -> None:
    gate = Gate([503, 201])
    gate.opened.set()
    middleware = IdempotencyMiddleware(gate)
    assert asyncio.run(call(middleware, container, b"y"))[:2] == (503, b"y1")
    assert asyncio.run(call(middleware, container, b"y"))[:2] == (201, b"y2")
    assert asyncio.run(call(middleware, container, b"y"))[:2] == (201, b"y2")
    assert gate.runs == 2


def test_expired_keys_are_purged_and_free_again(container: Container) -> None:
    store = container.idempotency
    now = container.clock.now()
    ref = store.ref("user:someone", "k1")
    fingerprint = store.fingerprint(b"POST", b"/x")
    assert store.claim(ref, fingerprint, now).outcome is Outcome.RUN
    store.complete(ref, StoredResponse(201, [], b"{}"), now, timedelta(minutes=1))
    assert store.claim(ref, fingerprint, now).outcome is Outcome.REPLAY
    assert store.purge(now) == 0
    assert store.purge(now + timedelta(minutes=2)) == 1
    assert store.claim(ref, fingerprint, now + timedelta(minutes=2)).outcome is Outcome.RUN


def test_a_key_whose_header_name_is_not_lowercased_is_still_honoured(
    client: TestClient,
) -> None:
    # ASGI servers lowercase header names, but a retry must not run twice behind one that does not.
    body = json.dumps(register_body("mixedcase")).encode()
    headers = [
        (b"Idempotency-Key", b"mixed-case-1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    def send_raw() -> list[MutableMapping[str, Any]]:
        return raw_exchange(client, "POST", "/api/v1/auth/register", headers, body)

    first = send_raw()
    assert first[0]["status"] == 201
    reached = head(client)
    again = send_raw()
    assert again[0]["status"] == 201
    assert (b"idempotent-replayed", b"true") in again[0]["headers"]
    assert head(client) == reached
