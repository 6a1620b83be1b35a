"""Streams handed to nginx: ``THEPLAYLIST_STREAM_DELIVERY=x-accel-redirect``, blobs on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from tests.conftest import make_settings
from tests.e2e.test_tracks_http import sign_up, uploaded, uploaded_tone
from tests.support.audio import audio
from tests.support.clients import container_of
from tests.support.s3 import S3Endpoint, s3_settings

PREFIX = "/_protected_blobs/"


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Blobs on disk, handed to nginx; a tiny in-memory threshold (which must not matter)."""
    return make_settings(
        backend,
        tmp_path,
        request,
        stream_delivery="x-accel-redirect",
        stream_memory_threshold_bytes=1000,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP; tests run the projectors with ``catch_up``."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


@pytest.fixture
def track(client: TestClient) -> dict[str, Any]:
    """An uploaded FLAC with an artist and a title, as the API shows it."""
    return uploaded_tone(client)


def _blob_file(client: TestClient, accel_redirect: str) -> Path:
    assert accel_redirect.startswith(PREFIX)
    relative = accel_redirect.removeprefix(PREFIX)
    return container_of(client).settings.data_dir / "blobs" / relative


def test_a_stream_is_an_empty_answer_naming_the_blob_file_for_nginx(
    client: TestClient, track: dict[str, Any]
) -> None:
    sha = track["sha256"]
    response = client.get(f"/api/v1/tracks/{track['id']}/stream")
    assert (response.status_code, response.content) == (200, b"")
    accel = response.headers["x-accel-redirect"]
    assert accel == f"{PREFIX}{sha[:2]}/{sha[2:4]}/{sha}"
    assert _blob_file(client, accel).read_bytes() == audio("tone.flac")
    assert response.headers["content-type"] == "audio/flac"
    assert response.headers["etag"] == f'"{sha}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers.get("content-length", "0") == "0"
    assert "content-disposition" not in response.headers
    # nginx answers ranges from the file: the service hands off whatever was asked.
    ranged = client.get(f"/api/v1/tracks/{track['id']}/stream", headers={"Range": "bytes=10-99"})
    assert (ranged.status_code, ranged.content) == (200, b"")
    assert ranged.headers["x-accel-redirect"] == accel
    assert "content-range" not in ranged.headers


def test_a_download_hands_off_the_same_file_as_a_named_attachment(
    client: TestClient, track: dict[str, Any]
) -> None:
    response = client.get(f"/api/v1/tracks/{track['id']}/download")
    assert (response.status_code, response.content) == (200, b"")
    assert _blob_file(client, response.headers["x-accel-redirect"]).read_bytes() == audio(
        "tone.flac"
    )
    assert response.headers["content-disposition"] == (
        'attachment; filename="Ada - Tne.flac"; '
        "filename*=UTF-8''%C3%85d%C3%A4%20-%20T%C3%B8ne.flac"
    )


def test_conditional_requests_and_head_are_still_answered_by_the_service(
    client: TestClient, track: dict[str, Any]
) -> None:
    url = f"/api/v1/tracks/{track['id']}/stream"
    etag = f'"{track["sha256"]}"'
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert "x-accel-redirect" not in not_modified.headers
    download = client.get(f"/api/v1/tracks/{track['id']}/download", headers={"If-None-Match": etag})
    assert download.status_code == 304
    head = client.head(url, headers={"Range": "bytes=10-19"})
    assert (head.status_code, head.headers["content-length"]) == (206, "10")
    assert "x-accel-redirect" not in head.headers
    assert client.get(f"/api/v1/tracks/{'0' * 32}/stream").status_code == 404


def test_the_prefix_is_a_setting(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = make_settings(
        "sqlite",
        tmp_path,
        request,
        stream_delivery="x-accel-redirect",
        stream_accel_prefix="/internal/audio/",
    )
    with TestClient(Combined(settings, run_projections=False)) as client:
        alice = sign_up(client, "alice")
        track_id = uploaded(client, alice, audio("tone.mp3"))
        accel = client.get(f"/api/v1/tracks/{track_id}/stream").headers["x-accel-redirect"]
    assert accel.startswith("/internal/audio/")
    relative = accel.removeprefix("/internal/audio/")
    assert (settings.data_dir / "blobs" / relative).read_bytes() == audio("tone.mp3")


def test_x_accel_redirect_is_refused_without_disk_storage(tmp_path: Path) -> None:
    s3 = s3_settings(S3Endpoint(9), "bucket")
    with pytest.raises(ValidationError, match="x-accel-redirect needs THEPLAYLIST_STORAGE=disk"):
        Settings.model_validate({"data_dir": tmp_path, **s3, "stream_delivery": "x-accel-redirect"})


@pytest.mark.parametrize(
    "prefix", ["_protected_blobs/", "/_protected_blobs", "/", "//", "/a b/", "/../", "/a?b/"]
)
def test_an_accel_prefix_must_be_a_plain_path_between_slashes(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ValidationError, match="stream_accel_prefix"):
        Settings.model_validate({"data_dir": tmp_path, "stream_accel_prefix": prefix})
    accepted = Settings.model_validate({"data_dir": tmp_path, "stream_accel_prefix": "/a/b-c/"})
    assert accepted.stream_accel_prefix == "/a/b-c/"
