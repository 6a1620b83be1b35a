"""The embedded default behind a test client."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from infrastructure.bootstrap import Container
from interfaces.http.combined import Combined
from interfaces.http.middleware import Message


def container_of(client: TestClient) -> Container:
    """The container of the embedded default ``client`` talks to (it must have started)."""
    combined: Combined = client.app  # type: ignore[assignment]
    assert combined.container is not None
    return combined.container


def raw_exchange(
    client: TestClient,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"{}",
) -> list[Message]:
    """What the app sends for a request given to its ASGI callable with these exact headers.

    HTTP clients, the test client included, re-encode, refuse or lowercase such headers.
    """
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    async def call() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None  # inside the client's `with`
    client.portal.call(call)
    return messages


def raw_call(
    client: TestClient, method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of :func:`raw_exchange` (with a ``{}`` body)."""
    messages = raw_exchange(client, method, path, headers)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return messages[0]["status"], json.loads(body)
