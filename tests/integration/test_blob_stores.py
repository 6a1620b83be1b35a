"""The blob stores behind the port: on disk, and on a real S3 endpoint (moto over HTTP)."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from application.errors import BlobNotFound
from infrastructure.blobs.disk import DiskBlobStore
from infrastructure.blobs.s3 import S3BlobStore, S3Options
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Endpoint, s3_endpoint

CHUNK = 1000
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[S3Endpoint]:
    """One moto server for the module."""
    with s3_endpoint() as running:
        yield running


def _s3(endpoint: S3Endpoint, bucket: str) -> S3BlobStore:
    return S3BlobStore(
        S3Options(
            bucket=bucket,
            endpoint_url=endpoint.url,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            multipart_threshold=5 * MiB,
            multipart_chunk=5 * MiB,
            chunk_size=CHUNK,
        )
    )


@pytest.fixture(params=["disk", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, endpoint: S3Endpoint
) -> Iterator[DiskBlobStore | S3BlobStore]:
    """Each test runs against both stores."""
    made: DiskBlobStore | S3BlobStore = (
        DiskBlobStore(tmp_path / "blobs", chunk_size=CHUNK)
        if request.param == "disk"
        else _s3(endpoint, endpoint.new_bucket())
    )
    yield made
    made.close()


def _source(tmp_path: Path, size: int, seed: int = 1) -> tuple[Path, str, bytes]:
    data = random.Random(seed).randbytes(size)
    path = tmp_path / f"source-{seed}-{size}"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), data


def test_a_stored_blob_reads_back_whole_and_by_ranges_in_bounded_chunks(
    store: DiskBlobStore | S3BlobStore, tmp_path: Path
) -> None:
    path, key, data = _source(tmp_path, 10_000)
    store.put(key, path, len(data))
    assert store.exists(key)
    assert store.stat(key).size == len(data)
    assert store.read(key, 0, 10) == data[:10]
    assert store.read(key, 9_990, 10_000) == data[9_990:]
    chunks = list(store.open(key, 100, 5_000))
    assert b"".join(chunks) == data[100:5_000]
    assert max(len(c) for c in chunks) <= CHUNK


def test_a_range_is_read_without_waiting_only_when_the_page_cache_holds_it(
    store: DiskBlobStore | S3BlobStore, tmp_path: Path
) -> None:
    path, key, data = _source(tmp_path, 200_000)
    store.put(key, path, len(data))
    if isinstance(store, S3BlobStore):
        store.read(key, 0, len(data))
        assert store.read_cached(key, 0, 100) is None  # every read goes over the network
        return
    # Out of the page cache (put fsynced it, so its pages are clean and may be
    # dropped). The kernel may keep a page a moment longer (once in a CI run,
    # one outlived the advice), so the advice is given again until it takes.
    for _ in range(50):
        fd = os.open(store.path(key), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        if store.read_cached(key, 1_000, 150_000) is None:
            break
        time.sleep(0.02)
    else:
        pytest.fail("a range dropped from the page cache is still read without waiting")
    assert store.read(key, 0, len(data)) == data
    cached = store.read_cached(key, 1_000, 150_000)
    assert cached is not None and bytes(cached) == data[1_000:150_000]
    # Anything read() would refuse or fail on is left to it: a short read, no blob, a bad key.
    assert store.read_cached(key, 199_000, 200_001) is None
    assert store.read_cached("0" * 64, 0, 10) is None
    assert store.read_cached("../../etc/passwd", 0, 10) is None


def test_storing_the_same_content_twice_keeps_one_blob(
    store: DiskBlobStore | S3BlobStore, tmp_path: Path
) -> None:
    path, key, data = _source(tmp_path, 3_000)
    store.put(key, path, len(data))
    store.put(key, path, len(data))
    assert [blob.key for blob in store.list()] == [key]


def test_deleting_is_idempotent_and_a_deleted_blob_is_not_found(
    store: DiskBlobStore | S3BlobStore, tmp_path: Path
) -> None:
    path, key, data = _source(tmp_path, 2_000)
    store.put(key, path, len(data))
    store.delete(key)
    store.delete(key)
    assert not store.exists(key)
    for attempt in (
        lambda: store.stat(key),
        lambda: store.read(key, 0, 1),
        lambda: store.open(key, 0, 1),
    ):
        with pytest.raises(BlobNotFound):
            attempt()
    assert list(store.list()) == []


def test_only_sha256_keys_are_accepted(store: DiskBlobStore | S3BlobStore, tmp_path: Path) -> None:
    path, _, data = _source(tmp_path, 10)
    for bad in ("../../etc/passwd", "ABC", "0" * 63, "g" * 64):
        with pytest.raises(ValueError, match="SHA-256"):
            store.put(bad, path, len(data))


def test_the_store_reports_its_health(store: DiskBlobStore | S3BlobStore) -> None:
    store.health()


def test_a_bucket_that_does_not_exist_is_not_healthy(endpoint: S3Endpoint) -> None:
    store = _s3(endpoint, "no-such-bucket-here")
    with pytest.raises(Exception, match=r"404|Not Found|NoSuchBucket"):
        store.health()
    store.close()


def test_a_disk_blob_is_content_addressed_linked_not_copied_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    store = DiskBlobStore(tmp_path / "blobs")
    path, key, data = _source(tmp_path, 5_000)
    store.put(key, path, len(data))
    stored = tmp_path / "blobs" / key[:2] / key[2:4] / key
    assert stored.read_bytes() == data
    # Same file system: the spooled upload became the blob without a second write.
    assert stored.stat().st_ino == path.stat().st_ino
    assert store.local_path(key) == stored
    assert list((tmp_path / "blobs" / ".incoming").iterdir()) == []
    # Whatever the spool's mode (0600 from mkstemp), a web server in the group may read it.
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640


def test_only_disk_blobs_have_a_delivery_path_and_only_s3_blobs_a_presigned_url(
    store: DiskBlobStore | S3BlobStore, tmp_path: Path
) -> None:
    path, key, data = _source(tmp_path, 2_000)
    store.put(key, path, len(data))
    url = store.presigned_url(key, 60, "audio/flac", "inline")
    if isinstance(store, DiskBlobStore):
        assert store.delivery_path(key) == f"{key[:2]}/{key[2:4]}/{key}"
        assert (store.root / f"{key[:2]}/{key[2:4]}/{key}").read_bytes() == data
        assert url is None
        with pytest.raises(ValueError, match="SHA-256"):
            store.delivery_path("../../etc/passwd")
    else:
        assert store.delivery_path(key) is None
        assert url is not None
        with httpx.Client() as plain:
            fetched = plain.get(url, headers={"Range": "bytes=0-9"})
        assert (fetched.status_code, fetched.content) == (206, data[:10])
        assert fetched.headers["content-type"] == "audio/flac"


def test_stale_temporary_files_on_disk_are_swept(tmp_path: Path) -> None:
    store = DiskBlobStore(tmp_path / "blobs")
    stale = tmp_path / "blobs" / ".incoming" / "abc.123"
    stale.write_bytes(b"half a blob")
    fresh = tmp_path / "blobs" / ".incoming" / "def.456"
    fresh.write_bytes(b"being written")
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(stale, (hour_ago, hour_ago))
    assert store.sweep_incomplete(datetime.now(UTC) - timedelta(minutes=5)) == 1
    assert not stale.exists()
    assert fresh.exists()


def test_a_large_file_goes_to_s3_in_parts_and_streams_back(
    endpoint: S3Endpoint, tmp_path: Path
) -> None:
    bucket = endpoint.new_bucket()
    store = _s3(endpoint, bucket)
    path, key, data = _source(tmp_path, 11 * MiB)
    store.put(key, path, len(data))
    head = endpoint.client().head_object(Bucket=bucket, Key=store.object_key(key))
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    streamed = hashlib.sha256()
    for chunk in store.open(key, 0, len(data)):
        streamed.update(chunk)
    assert streamed.hexdigest() == key
    store.close()


def test_abandoned_multipart_uploads_are_aborted(endpoint: S3Endpoint) -> None:
    bucket = endpoint.new_bucket()
    store = _s3(endpoint, bucket)
    key = "a" * 64
    client = endpoint.client()
    client.create_multipart_upload(Bucket=bucket, Key=store.object_key(key))
    assert store.sweep_incomplete(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    store.close()
