"""A real S3 endpoint for tests: moto's server over HTTP on a free local port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.support.postgres import free_port

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"  # moto accepts any credentials


@dataclass
class S3Endpoint:
    """A moto server that a test can stop and start again on the same port.

    Buckets and objects live in the test process's memory, so they survive a restart.
    """

    port: int
    _server: Any = None

    @property
    def url(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again)."""
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        """A plain boto3 client of the endpoint, for setting up and inspecting."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object name in the bucket."""
        listing = self.client().list_objects_v2(Bucket=bucket)
        return [item["Key"] for item in listing.get("Contents", [])]


@contextmanager
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A running moto S3 server, stopped at the end."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    endpoint = S3Endpoint(free_port())
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def s3_settings(endpoint: S3Endpoint, bucket: str) -> dict[str, object]:
    """Settings overrides that point ThePlaylist at the bucket."""
    return {
        "storage": "s3",
        "s3_endpoint_url": endpoint.url,
        "s3_bucket": bucket,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
        "s3_region": "us-east-1",
    }
