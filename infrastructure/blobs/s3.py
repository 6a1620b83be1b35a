"""Blobs in an S3-compatible bucket (AWS, Backblaze B2, MinIO...), content-addressed.

Objects are named ``<prefix>ab/cd/<sha256>``. Large files go up as multipart
uploads (``boto3``'s transfer manager, reading the local file part by part),
reads are ranged GETs streamed in chunks. Each kind of call has a client of
its own whose socket timeouts come from settings, and botocore's own retries
are off: the circuit breaker in front decides what a failure means, and a
retry loop hidden in here would turn a dead endpoint into slow requests
instead of fast 503s.

Presigned GET URLs (for redirecting clients to the bucket) are signed by a
client of their own pointed at the public endpoint, which clients can reach
where the internal one often is not; signing is local, no request is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from application.errors import BlobNotFound
from application.ports import BlobInfo
from infrastructure.blobs.disk import KEY, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

log = logging.getLogger(__name__)

_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Options:
    """Where the bucket is, how to sign in, and how to move big files."""

    bucket: str
    endpoint_url: str | None = None
    # Where clients reach the bucket, for presigned URLs (default: ``endpoint_url``).
    public_endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = "blobs/"
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    upload_timeout: float = 300.0
    delete_timeout: float = 10.0
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_chunk: int = 8 * 1024 * 1024
    max_concurrency: int = 4
    chunk_size: int = 1024 * 1024


def _missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _MISSING or status == "404"


class S3BlobStore:
    """The S3 :class:`application.ports.BlobStore`."""

    name = "s3"

    def __init__(self, options: S3Options) -> None:
        self._options = options
        self._bucket = options.bucket
        self._prefix = options.prefix
        session = boto3.session.Session(
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            region_name=options.region,
        )

        def client(read_timeout: float, endpoint_url: str | None) -> S3Client:
            # Path-style addressing for custom endpoints: MinIO and friends rarely have
            # wildcard DNS for bucket sub-domains.
            addressing: Literal["path", "auto"] = "path" if endpoint_url else "auto"
            config = Config(
                connect_timeout=options.connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
                max_pool_connections=max(10, options.max_concurrency * 4),
                s3={"addressing_style": addressing},
                signature_version="s3v4",
            )
            made: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
            return made

        self._reads = client(options.read_timeout, options.endpoint_url)
        self._uploads = client(options.upload_timeout, options.endpoint_url)
        self._deletes = client(options.delete_timeout, options.endpoint_url)
        # Never sends a request: it only signs URLs for the endpoint clients use.
        self._presigner = client(
            options.read_timeout, options.public_endpoint_url or options.endpoint_url
        )
        self._transfer = TransferConfig(
            multipart_threshold=options.multipart_threshold,
            multipart_chunksize=options.multipart_chunk,
            max_concurrency=options.max_concurrency,
            use_threads=options.max_concurrency > 1,
            preferred_transfer_client="classic",
        )

    def object_key(self, key: str) -> str:
        """The object name of the blob of ``key``."""
        check_key(key)
        return f"{self._prefix}{key[:2]}/{key[2:4]}/{key}"

    def put(self, key: str, source: Path, size: int) -> None:
        """Upload ``source`` (multipart above the threshold); kept as is when already there."""
        try:
            if self.stat(key).size == size:
                return
        except BlobNotFound:
            pass
        self._uploads.upload_file(
            str(source),
            self._bucket,
            self.object_key(key),
            ExtraArgs={"ContentType": "application/octet-stream"},
            Config=self._transfer,
        )

    def exists(self, key: str) -> bool:
        """True when the object exists."""
        try:
            self.stat(key)
        except BlobNotFound:
            return False
        return True

    def stat(self, key: str) -> BlobInfo:
        """Size and last write time (a HEAD request)."""
        try:
            head = self._reads.head_object(Bucket=self._bucket, Key=self.object_key(key))
        except ClientError as error:
            if _missing(error):
                raise BlobNotFound(f"no blob {key}") from None
            raise
        return BlobInfo(key, int(head["ContentLength"]), head["LastModified"])

    def _get(self, key: str, start: int, end: int) -> Any:
        try:
            return self._reads.get_object(
                Bucket=self._bucket, Key=self.object_key(key), Range=f"bytes={start}-{end - 1}"
            )["Body"]
        except ClientError as error:
            if _missing(error):
                raise BlobNotFound(f"no blob {key}") from None
            raise

    def read(self, key: str, start: int, end: int) -> bytes:
        """A small range, into memory (one ranged GET)."""
        body = self._get(key, start, end)
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def read_cached(self, key: str, start: int, end: int) -> memoryview | None:
        """Never: every read is a request over the network."""
        return None

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """A ranged GET whose body is read chunk by chunk as the response goes out."""
        return self._chunks(self._get(key, start, end))

    def _chunks(self, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(self._options.chunk_size)
        finally:
            body.close()

    def local_path(self, key: str) -> Path | None:
        """Never local."""
        return None

    def delivery_path(self, key: str) -> str | None:
        """Objects are not files."""
        return None

    def presigned_url(self, key: str, ttl_seconds: int, content_type: str, disposition: str) -> str:
        """A GET URL signed for ``ttl_seconds`` (SigV4, so at most 7 days), at the public
        endpoint; S3 answers it with this ``Content-Type`` and ``Content-Disposition``
        and honours the client's own ``Range``."""
        url: str = self._presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": self.object_key(key),
                "ResponseContentType": content_type,
                "ResponseContentDisposition": disposition,
            },
            ExpiresIn=ttl_seconds,
        )
        return url

    def delete(self, key: str) -> None:
        """Delete the object (S3 deletes of missing objects succeed)."""
        self._deletes.delete_object(Bucket=self._bucket, Key=self.object_key(key))

    def list(self) -> Iterator[BlobInfo]:
        """Every blob object under the prefix."""
        paginator = self._reads.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if KEY.fullmatch(name) and item["Key"] == self.object_key(name):
                    yield BlobInfo(name, int(item["Size"]), item["LastModified"])

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Abort multipart uploads started before ``older_than`` (their parts cost money)."""
        aborted = 0
        paginator = self._deletes.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < older_than:
                    self._deletes.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def health(self) -> None:
        """The bucket must answer (a HEAD request)."""
        self._reads.head_bucket(Bucket=self._bucket)

    def close(self) -> None:
        """Close the connection pools."""
        for client in (self._reads, self._uploads, self._deletes, self._presigner):
            client.close()
