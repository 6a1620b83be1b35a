"""Every response names its request, and every request is logged once with its outcome."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from interfaces.http.middleware import RequestContext
from interfaces.logging import request_id_var

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()

    @app.post("/echo")
    async def echo() -> dict[str, str | None]:
        return {"seen": request_id_var.get()}

    with TestClient(RequestContext(app, json_limit=64, multipart_limit=1024)) as client:
        yield client


def test_a_sane_client_request_id_is_kept(client: TestClient) -> None:
    answer = client.post("/echo", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert answer.headers["x-request-id"] == "abc.DEF_1-2"
    assert answer.json() == {"seen": "abc.DEF_1-2"}


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "semi;colon", "a/b"])
def test_any_other_request_gets_a_fresh_id(client: TestClient, given: str | None) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    first = client.post("/echo", headers=headers)
    second = client.post("/echo", headers=headers)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert first.json() == {"seen": ids[0]}


def test_a_request_is_logged_once_with_its_status(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="theplaylist.access"):
        client.post("/echo", headers={"X-Request-ID": "one"})
        client.post("/missing", headers={"X-Request-ID": "two"})
    lines = [(r.getMessage(), r.status) for r in caplog.records if r.name == "theplaylist.access"]  # type: ignore[attr-defined]
    assert lines == [("POST /echo 200", 200), ("POST /missing 404", 404)]


def test_nothing_is_logged_below_the_configured_level(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="theplaylist.access"):
        client.post("/echo")
    assert [r for r in caplog.records if r.name == "theplaylist.access"] == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Length": "65", "Content-Type": "application/json"}, 413),
        ({"Content-Length": "65", "Content-Type": "multipart/form-data; boundary=x"}, 200),
        ({"Content-Length": "6x5"}, 400),
    ],
)
def test_the_declared_length_is_checked_against_the_limit_of_its_kind(
    client: TestClient, headers: dict[str, str], status: int
) -> None:
    answer = client.post("/echo", content=b"x" * 65, headers=headers)
    assert answer.status_code == status
    assert GENERATED.fullmatch(answer.headers["x-request-id"])
