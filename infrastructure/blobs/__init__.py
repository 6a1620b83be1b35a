"""Blob storage adapters: disk (default) or S3, always behind the circuit breaker."""

from __future__ import annotations

from infrastructure.blobs.breaker import BreakerTimeouts, GuardedBlobStore
from infrastructure.blobs.disk import DiskBlobStore
from infrastructure.blobs.s3 import S3BlobStore, S3Options
from infrastructure.settings import Settings


def open_blob_store(settings: Settings) -> GuardedBlobStore:
    """The configured store (``THEPLAYLIST_STORAGE``), wrapped in the breaker."""
    store: DiskBlobStore | S3BlobStore
    if settings.storage == "s3":
        assert settings.s3_bucket is not None  # the settings refuse s3 without a bucket
        secret = settings.s3_secret_access_key
        store = S3BlobStore(
            S3Options(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                public_endpoint_url=settings.s3_public_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=secret.get_secret_value() if secret is not None else None,
                connect_timeout=settings.storage_connect_timeout_seconds,
                read_timeout=settings.storage_read_timeout_seconds,
                upload_timeout=settings.storage_upload_timeout_seconds,
                delete_timeout=settings.storage_delete_timeout_seconds,
                multipart_threshold=settings.s3_multipart_threshold_bytes,
                multipart_chunk=settings.s3_multipart_chunk_bytes,
                max_concurrency=settings.s3_max_concurrency,
                chunk_size=settings.stream_chunk_bytes,
            )
        )
    else:
        store = DiskBlobStore(settings.data_dir / "blobs", chunk_size=settings.stream_chunk_bytes)
    return GuardedBlobStore(
        store,
        name=store.name,
        failure_threshold=settings.storage_breaker_failure_threshold,
        recovery_seconds=settings.storage_breaker_recovery_seconds,
        timeouts=BreakerTimeouts(
            upload=settings.storage_upload_timeout_seconds,
            read=settings.storage_read_timeout_seconds,
            delete=settings.storage_delete_timeout_seconds,
        ),
    )
