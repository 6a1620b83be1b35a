"""Hostile input a fuzzer found answered with a 500: each is now a clear 4xx, on both backends.

Forged list cursors, NUL in a query string, headers that only look like numbers
or URLs, bodies that cannot be parsed. Every answer is the error envelope, and
none of them appends an event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from infrastructure.bootstrap import Container
from interfaces.http.combined import Combined
from tests.conftest import make_settings
from tests.support.accounts import API, bearer_login, login, register
from tests.support.clients import raw_call


@pytest.fixture
def client(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The embedded default with the test settings."""
    settings = make_settings(backend, tmp_path, request)
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def head(client: TestClient) -> int:
    """The log's last position."""
    container: Container = client.app.container  # type: ignore[attr-defined]
    return container.app.head


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error object, once the response is checked to be ``status`` with ``code``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


def cursor(value: Any, row_id: Any = "00000000-0000-0000-0000-000000000001") -> str:
    """A cursor as the server encodes them, around whatever value and id."""
    raw = json.dumps([value, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED = {
    "an id that is not a string": ("plays", cursor(1, 5)),
    "a count past 64 bits": ("plays", cursor(2**70)),
    "a negative count past 64 bits": ("likes", cursor(-(2**70))),
    "a lone surrogate in a title": ("title", cursor("\ud800")),
    "NUL in a title": ("title", cursor("\u0000")),
    "year 1": ("new", cursor({"t": "0001-01-01T00:00:00+00:00"})),
    "year 9999 ahead of UTC": ("new", cursor({"t": "9999-12-31T23:59:59-14:00"})),
    "a time without a zone": ("new", cursor({"t": "2026-01-01T00:00:00"})),
    "a count where a time belongs": ("new", cursor(5)),
}


@pytest.mark.parametrize("case", FORGED)
def test_a_forged_cursor_is_a_validation_error_on_every_list(client: TestClient, case: str) -> None:
    register(client, "alice")
    bearer = {"Authorization": f"Bearer {bearer_login(client, 'alice').access_token}"}
    sort, forged = FORGED[case]
    lists = [f"{API}/tracks", f"{API}/me/tracks", f"{API}/playlists", f"{API}/me/playlists"]
    for path in lists:
        playlist_sort = "name" if sort == "title" else sort
        params = {"sort": playlist_sort if "playlists" in path else sort, "cursor": forged}
        error = refused(client.get(path, params=params, headers=bearer), 422, "validation_error")
        assert [f["field"] for f in error["fields"]] == ["cursor"], path
    if sort == "new":
        history = client.get(f"{API}/me/history", params={"cursor": forged}, headers=bearer)
        refused(history, 422, "validation_error")


def test_nul_in_a_query_string_is_a_validation_error_before_any_route(client: TestClient) -> None:
    register(client, "alice")
    bearer = {"Authorization": f"Bearer {bearer_login(client, 'alice').access_token}"}
    for path in ["tracks?q=%00", "me/tracks?q=a%00b", "playlists?q=%00", "audit/events?type=%00"]:
        refused(client.get(f"{API}/{path}", headers=bearer), 422, "validation_error")
    reached = head(client)
    refused(
        client.post(f"{API}/playlists?x=%00", json={"name": "x"}, headers=bearer),
        422,
        "validation_error",
    )
    assert head(client) == reached
    assert client.get(f"{API}/tracks", params={"q": "a%00b"}, headers=bearer).status_code == 200


def test_headers_that_only_look_like_numbers_are_refused(client: TestClient) -> None:
    # Header bytes are read as Latin-1: "²" and "¹" are digits to str.isdigit(), not to int().
    for value in [b"\xb2", b"1\xb2", b"\xb9"]:
        status, body = raw_call(client, "GET", f"{API}/tracks", [(b"x-min-position", value)])
        assert (status, body["error"]["code"]) == (422, "validation_error"), value


@pytest.mark.parametrize("declared", [b"\xb2", b"abc", b"-1", b"1e3"])
def test_a_content_length_that_is_not_a_number_is_a_bad_request(
    client: TestClient, declared: bytes
) -> None:
    reached = head(client)
    headers = [(b"content-type", b"application/json"), (b"content-length", declared)]
    status, body = raw_call(client, "POST", f"{API}/auth/register", headers)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert head(client) == reached


def test_a_cookie_request_whose_origin_or_referer_is_not_a_url_is_forbidden(
    client: TestClient,
) -> None:
    register(client, "alice")
    login(client, "alice")
    reached = head(client)
    for headers in [{"Origin": "http://[::1"}, {"Referer": "http://[zz/page"}]:
        renamed = client.patch(f"{API}/users/me", json={"username": "alicia"}, headers=headers)
        refused(renamed, 403, "forbidden")
        refused(client.post(f"{API}/auth/refresh", headers=headers), 403, "forbidden")
    assert head(client) == reached


def test_bodies_that_cannot_be_parsed_are_validation_errors(client: TestClient) -> None:
    reached = head(client)
    json_type = {"Content-Type": "application/json"}
    for body in [b'{"username": "\xff\xfe"}', b'{"n": ' + b"1" * 5000 + b"}"]:
        response = client.post(f"{API}/auth/register", content=body, headers=json_type)
        error = refused(response, 422, "validation_error")
        assert [f["field"] for f in error["fields"]] == ["body"]
    broken_form = {"Content-Type": "multipart/form-data; boundary=x"}
    response = client.post(
        f"{API}/auth/token", content=b"--x\r\nno headers end", headers=broken_form
    )
    refused(response, 422, "validation_error")
    assert head(client) == reached
