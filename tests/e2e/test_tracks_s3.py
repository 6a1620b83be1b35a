"""Tracks on S3 (moto's server over HTTP), and what happens when the endpoint goes away."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.errors import StorageUnavailable
from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from tests.conftest import catch_up, make_settings
from tests.e2e.test_tracks_http import sign_up, upload, uploaded
from tests.support.audio import audio
from tests.support.clients import container_of
from tests.support.s3 import S3Endpoint, s3_endpoint, s3_settings

# Long enough that the breaker stays open through the requests the test sends while
# it is open: with 0.3 s, one slow upload on a loaded machine let it go half-open.
RECOVERY = 2.0


@pytest.fixture
def endpoint() -> Iterator[S3Endpoint]:
    """A moto server of this test's own: tests stop and restart it."""
    with s3_endpoint() as running:
        yield running


@pytest.fixture
def bucket(endpoint: S3Endpoint) -> str:
    """An empty bucket."""
    return endpoint.new_bucket()


@pytest.fixture
def settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, endpoint: S3Endpoint, bucket: str
) -> Settings:
    """S3 storage, a breaker that opens after 2 failures for RECOVERY s, small in-memory answers."""
    return make_settings(
        backend,
        tmp_path,
        request,
        **s3_settings(endpoint, bucket),
        storage_breaker_failure_threshold=2,
        storage_breaker_recovery_seconds=RECOVERY,
        storage_connect_timeout_seconds=1,
        storage_read_timeout_seconds=2,
        stream_memory_threshold_bytes=1000,
        stream_chunk_bytes=4096,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP; tests run the projectors with ``catch_up``."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def test_tracks_are_stored_in_the_bucket_and_stream_back_in_ranges(
    client: TestClient, endpoint: S3Endpoint, bucket: str
) -> None:
    alice = sign_up(client, "alice")
    data = audio("tone.flac")
    track_id = uploaded(client, alice, data)
    track = client.get(f"/api/v1/tracks/{track_id}").json()
    sha = track["sha256"]
    assert endpoint.keys(bucket) == [f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"]
    whole = client.get(f"/api/v1/tracks/{track_id}/stream")
    assert (whole.status_code, whole.content) == (200, data)
    part = client.get(f"/api/v1/tracks/{track_id}/stream", headers={"Range": "bytes=5000-"})
    assert (part.status_code, part.content) == (206, data[5000:])
    small = client.get(f"/api/v1/tracks/{track_id}/stream", headers={"Range": "bytes=-100"})
    assert (small.status_code, small.content) == (206, data[-100:])


def _wait_for_recovery() -> None:
    # The breaker's recovery period is wall-clock time; it is kept short here.
    time.sleep(RECOVERY * 1.5)


def test_an_s3_outage_opens_the_breaker_and_requests_fail_fast_until_it_is_back(
    client: TestClient, endpoint: S3Endpoint, bucket: str
) -> None:
    alice = sign_up(client, "alice")
    streamed_id = uploaded(client, alice, audio("tone.mp3"))
    container = container_of(client)
    head = container.app.head

    endpoint.stop()
    for _ in range(2):
        failed = upload(client, alice, audio("tone.ogg"))
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "storage_unavailable"
    assert container.blobs.state == "opened"

    requests: list[Callable[[], Any]] = [
        lambda: upload(client, alice, audio("tone.ogg")),
        lambda: client.get(f"/api/v1/tracks/{streamed_id}/stream"),
    ]
    for request in requests:
        before = container.blobs.snapshot()
        response = request()
        after = container.blobs.snapshot()
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        # Failing fast means refused by the open breaker without a call to the store
        # (no connect, no timeout): a property, not a wall-clock figure that a loaded
        # machine would make flaky.
        assert after.rejected == before.rejected + 1
        assert after.calls == before.calls
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["storage_breaker"]["state"] == "opened"
    # Nothing was appended, nothing half-written, nothing left in the spool.
    assert container.app.head == head
    assert list((container.settings.data_dir / "tmp" / "uploads").iterdir()) == []

    endpoint.start()
    assert len(endpoint.keys(bucket)) == 1
    _wait_for_recovery()
    ready = client.get("/ready")  # the trial call, half-open, succeeds
    assert ready.status_code == 200
    assert ready.json()["storage_breaker"]["state"] == "closed"
    assert uploaded(client, alice, audio("tone.ogg"))
    assert len(endpoint.keys(bucket)) == 2


def test_a_deleted_tracks_blob_is_removed_once_storage_is_back(
    client: TestClient, endpoint: S3Endpoint, bucket: str
) -> None:
    alice = sign_up(client, "alice")
    track_id = uploaded(client, alice, audio("tone.wav"))
    container = container_of(client)
    endpoint.stop()
    assert client.delete(f"/api/v1/tracks/{track_id}", headers=alice).status_code == 204
    # The track leaves the read model at once; its blob removal is owed, and retried.
    with pytest.raises(StorageUnavailable):
        catch_up(container)
    assert client.get(f"/api/v1/tracks/{track_id}").status_code == 404
    cleanup = next(r for r in container.runners() if r.name == "blob_cleanup")
    assert cleanup.position() < container.app.head
    endpoint.start()
    assert len(endpoint.keys(bucket)) == 1
    _wait_for_recovery()
    catch_up(container)
    assert cleanup.position() == container.app.head
    assert endpoint.keys(bucket) == []
