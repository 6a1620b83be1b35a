"""The embedded default behind a test client."""

from __future__ import annotations

from fastapi.testclient import TestClient

from infrastructure.bootstrap import Container
from interfaces.http.combined import Combined


def container_of(client: TestClient) -> Container:
    """The container of the embedded default ``client`` talks to (it must have started)."""
    combined: Combined = client.app  # type: ignore[assignment]
    assert combined.container is not None
    return combined.container
