"""Streams redirected to S3: ``THEPLAYLIST_STREAM_DELIVERY=s3-presigned`` (moto over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from interfaces.http.streaming import content_disposition
from tests.conftest import make_settings
from tests.e2e.test_tracks_http import sign_up, uploaded, uploaded_tone
from tests.support.audio import audio
from tests.support.clients import container_of
from tests.support.s3 import S3Endpoint, s3_endpoint, s3_settings

TTL = 120


@pytest.fixture(scope="module")
def endpoint() -> Iterator[S3Endpoint]:
    """One moto server for the module (nothing here stops it)."""
    with s3_endpoint() as running:
        yield running


@pytest.fixture
def settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, endpoint: S3Endpoint
) -> Settings:
    """S3 storage in a fresh bucket, streams redirected to presigned URLs."""
    return make_settings(
        backend,
        tmp_path,
        request,
        **s3_settings(endpoint, endpoint.new_bucket()),
        stream_delivery="s3-presigned",
        s3_presign_ttl_seconds=TTL,
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


def test_a_stream_redirects_to_a_presigned_url_that_serves_the_bytes_and_ranges(
    client: TestClient, endpoint: S3Endpoint, track: dict[str, Any]
) -> None:
    data = audio("tone.flac")
    container = container_of(client)
    calls_before = container.blobs.snapshot().calls
    response = client.get(f"/api/v1/tracks/{track['id']}/stream", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["cache-control"] == f"private, max-age={TTL // 2}"
    assert "etag" not in response.headers
    # Signing sends nothing to the store: it is not a storage call.
    assert container.blobs.snapshot().calls == calls_before
    location = response.headers["location"]
    assert location.startswith(f"{endpoint.url}/")
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == [str(TTL)]

    # A client with no credentials at all, straight to the bucket.
    with httpx.Client() as plain:
        whole = plain.get(location)
        assert (whole.status_code, whole.content) == (200, data)
        assert whole.headers["content-type"] == "audio/flac"
        assert whole.headers["content-disposition"] == "inline"
        part = plain.get(location, headers={"Range": "bytes=10-99"})
        assert (part.status_code, part.content) == (206, data[10:100])
        assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"


def test_a_download_redirects_to_a_url_that_s3_answers_as_a_named_attachment(
    client: TestClient, track: dict[str, Any]
) -> None:
    response = client.get(f"/api/v1/tracks/{track['id']}/download", follow_redirects=False)
    assert response.status_code == 307
    with httpx.Client() as plain:
        fetched = plain.get(response.headers["location"])
    assert (fetched.status_code, fetched.content) == (200, audio("tone.flac"))
    expected = content_disposition("attachment", "Ådä - Tøne.flac")
    assert expected.startswith('attachment; filename="Ada - Tne.flac"; filename*=UTF-8')
    assert fetched.headers["content-disposition"] == expected


def test_conditional_requests_and_head_are_answered_before_any_redirect(
    client: TestClient, track: dict[str, Any]
) -> None:
    etag = f'"{track["sha256"]}"'
    for kind in ("stream", "download"):
        url = f"/api/v1/tracks/{track['id']}/{kind}"
        not_modified = client.get(url, headers={"If-None-Match": etag}, follow_redirects=False)
        assert (not_modified.status_code, not_modified.content) == (304, b"")
        assert "location" not in not_modified.headers
        head = client.head(url, follow_redirects=False)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(audio("tone.flac")))
    assert client.get(f"/api/v1/tracks/{'0' * 32}/stream").status_code == 404


def test_presigned_urls_point_at_the_public_endpoint_when_one_is_set(
    tmp_path: Path, request: pytest.FixtureRequest, endpoint: S3Endpoint
) -> None:
    settings = make_settings(
        "sqlite",
        tmp_path,
        request,
        **s3_settings(endpoint, endpoint.new_bucket()),
        stream_delivery="s3-presigned",
        s3_public_endpoint_url="https://media.example.test/",
    )
    with TestClient(Combined(settings, run_projections=False)) as client:
        alice = sign_up(client, "alice")
        track_id = uploaded(client, alice, audio("tone.mp3"))
        response = client.get(f"/api/v1/tracks/{track_id}/stream", follow_redirects=False)
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc) == ("https", "media.example.test")
    assert location.path.startswith(f"/{settings.s3_bucket}/blobs/")


def test_s3_presigned_is_refused_without_s3_storage(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="s3-presigned needs THEPLAYLIST_STORAGE=s3"):
        Settings.model_validate({"data_dir": tmp_path, "stream_delivery": "s3-presigned"})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"s3_presign_ttl_seconds": 0}, "s3_presign_ttl_seconds"),
        ({"s3_presign_ttl_seconds": 604_801}, "s3_presign_ttl_seconds"),
        ({"s3_public_endpoint_url": "media.example.test"}, "s3_public_endpoint_url"),
    ],
)
def test_presign_settings_are_checked(
    tmp_path: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({"data_dir": tmp_path, **overrides})
