"""The session flow over HTTP: cookies, bearer tokens, rotation, CSRF, forgeries and errors.

Every test runs the embedded default (both services and the projectors) on SQLite and
on PostgreSQL, and checks afterwards that no response and no log line showed a
password, a password hash or a stack trace.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from interfaces.http.combined import Combined
from tests.conftest import make_settings
from tests.support.accounts import (
    API,
    PASSWORD,
    ResponseLog,
    Tokens,
    bearer_login,
    login,
    origin_of,
    register,
    set_cookies,
)
from tests.support.clients import container_of

Serve = Callable[..., TestClient]
AUTH = f"{API}/auth"


@pytest.fixture
def serve(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[Serve]:
    """Start the embedded default with settings overrides; leak checks run at the end."""
    caplog.set_level(logging.INFO)
    numbers = count()
    log = ResponseLog()

    def start(base_url: str = "http://testserver", **overrides: object) -> TestClient:
        directory = tmp_path / f"server-{next(numbers)}"
        settings = make_settings(backend, directory, request, **overrides)
        client = TestClient(Combined(settings), base_url=base_url)
        client.__enter__()
        # Finalizers run last-in first-out: the server stops before its schema is dropped.
        request.addfinalizer(lambda: client.__exit__(None, None, None))
        log.attach(client)
        return client

    yield start
    assert log.leaks([PASSWORD, "new password 42"]) == []
    assert PASSWORD not in caplog.text and "$argon2" not in caplog.text


@pytest.fixture
def client(serve: Serve) -> TestClient:
    """The embedded default with the test settings."""
    return serve()


def position(response: httpx.Response) -> str:
    """The response's ``X-Event-Position``."""
    return response.headers["x-event-position"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error envelope's inner object (fails when the body is not an envelope)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


# --- browser sessions ----------------------------------------------------------------------


def test_login_sets_http_only_secure_cookies_scoped_as_the_contract_says(serve: Serve) -> None:
    samesite = "strict"
    client = serve("https://testserver", cookie_secure=True, cookie_samesite=samesite)
    user_id = register(client, "alice")
    response = login(client, "alice")
    assert response.json()["user"] == {"id": str(user_id), "username": "alice"}
    cookies = set_cookies(response)
    access, refresh = cookies["access_token"], cookies["refresh_token"]
    assert {"httponly", "secure"} <= access.flags and {"httponly", "secure"} <= refresh.flags
    assert access.attributes["path"] == "/"
    assert refresh.attributes["path"] == "/api/v1/auth"
    assert access.attributes["samesite"].lower() == samesite
    assert refresh.attributes["samesite"].lower() == samesite
    ttl = container_of(client).settings.access_token_ttl_seconds
    assert ttl - 2 <= int(access.attributes["max-age"]) <= ttl
    assert response.headers["x-event-position"].isdigit()
    session = client.get(f"{AUTH}/session")
    assert session.status_code == 200, session.text


def test_cookies_are_not_secure_when_disabled_for_local_http_and_not_renewed_early(
    client: TestClient,
) -> None:
    register(client, "alice")
    cookies = set_cookies(login(client, "alice"))
    assert "secure" not in cookies["access_token"].flags
    assert cookies["access_token"].attributes["samesite"].lower() == "lax"
    # Far from its expiry, the access cookie is left alone.
    assert "access_token" not in set_cookies(client.get(f"{AUTH}/session"))


def test_a_signed_in_browser_validates_its_session_and_reads_its_own_writes(
    client: TestClient,
) -> None:
    user_id = register(client, "alice", email="Alice@Example.com")
    signed_in = login(client, "alice")
    session = client.get(f"{AUTH}/session")
    assert session.status_code == 200
    assert session.json()["authenticated"] is True
    assert session.json()["user"] == {
        "id": str(user_id),
        "username": "alice",
        "email": "alice@example.com",
    }
    me = client.get(f"{API}/me", headers={"X-Min-Position": position(signed_in)})
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["email"]) == ("alice", "alice@example.com")

    renamed = client.patch(
        f"{API}/users/me", json={"username": "alicia"}, headers=origin_of(client)
    )
    assert renamed.status_code == 200
    profile = client.get(f"{API}/users/{user_id}", headers={"X-Min-Position": position(renamed)})
    assert profile.json()["username"] == "alicia"
    assert "email" not in profile.json()


def test_refresh_rotates_and_reusing_an_old_refresh_token_revokes_the_whole_session(
    client: TestClient,
) -> None:
    register(client, "alice")
    first = set_cookies(login(client, "alice"))["refresh_token"].value
    refreshed = client.post(f"{AUTH}/refresh", headers=origin_of(client))
    assert refreshed.status_code == 200, refreshed.text
    rotated = set_cookies(refreshed)
    second = rotated["refresh_token"].value
    assert second != first and rotated["access_token"].value

    reuse = client.post(
        f"{AUTH}/refresh", headers={**origin_of(client), "Cookie": f"refresh_token={first}"}
    )
    assert reuse.status_code == 401
    assert error_of(reuse)["code"] == "unauthenticated"
    # The thief's copy is burnt, and so is the legitimate newest token.
    assert client.post(f"{AUTH}/refresh", headers=origin_of(client)).status_code == 401
    assert client.get(f"{AUTH}/session").status_code == 401
    # A refused refresh has no X-Event-Position; the revocation is at the head of the log.
    head = str(container_of(client).app.head)
    listed = client.get(f"{AUTH}/sessions", headers={"X-Min-Position": head})
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_open_sessions_are_listed_and_a_revoked_one_can_no_longer_be_used(
    client: TestClient,
) -> None:
    register(client, "alice")
    register(client, "bob")
    login(client, "alice")
    phone = bearer_login(client, "alice")
    listed = client.get(f"{AUTH}/sessions", headers={"X-Min-Position": str(phone.position)})
    items = listed.json()["items"]
    assert len(items) == 2
    assert [item["current"] for item in items].count(True) == 1
    other = next(item["id"] for item in items if not item["current"])

    bobs = bearer_login(client, "bob")
    assert client.delete(f"{AUTH}/sessions/{other}", headers=bobs.headers).status_code == 404

    revoked = client.delete(f"{AUTH}/sessions/{other}", headers=origin_of(client))
    assert revoked.status_code == 204
    after = client.get(f"{AUTH}/sessions", headers={"X-Min-Position": position(revoked)})
    assert [item["current"] for item in after.json()["items"]] == [True]
    assert client.get(f"{AUTH}/session", headers=phone.headers).status_code == 401
    client.cookies.clear()  # a refresh cookie would take precedence over the JSON body
    again = client.post(f"{AUTH}/refresh", json={"refresh_token": phone.refresh_token})
    assert again.status_code == 401


def session_of(tokens: Tokens) -> str:
    """The id of the session the tokens belong to (the access token's ``sid``)."""
    sid: str = jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]
    return sid


def test_sessions_page_newest_first_each_exactly_once(serve: Serve) -> None:
    client = serve(page_limit_default=3, page_limit_max=4)
    register(client, "alice")
    phones = [bearer_login(client, "alice") for _ in range(8)]
    me = phones[-1]
    opened = {session_of(t) for t in phones}
    wait = {**me.headers, "X-Min-Position": str(me.position)}

    def page(limit: int | None, cursor: str | None) -> dict[str, Any]:
        params: dict[str, str | int] = {} if limit is None else {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(f"{AUTH}/sessions", params=params, headers=wait)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    for limit, sizes in [(None, [3, 3, 2]), (4, [4, 4]), (1, [1] * 8)]:
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        for index, size in enumerate(sizes):
            body = page(limit, cursor)
            assert len(body["items"]) == size, (limit, index)
            seen.extend(body["items"])
            cursor = body["next_cursor"]
            # The last page, and only it, says there is no next one.
            assert (cursor is None) == (index == len(sizes) - 1), (limit, index)
        ids = [item["id"] for item in seen]
        assert len(ids) == len(set(ids)) and set(ids) == opened
        keys = [(datetime.fromisoformat(item["created_at"]), UUID(item["id"])) for item in seen]
        assert keys == sorted(keys, reverse=True)
        assert [item["id"] for item in seen if item["current"]] == [session_of(me)]


def test_sessions_refuse_a_limit_above_the_cap_and_a_forged_cursor(serve: Serve) -> None:
    client = serve(page_limit_default=3, page_limit_max=4)
    register(client, "alice")
    me = bearer_login(client, "alice")
    forged_value = base64.urlsafe_b64encode(b'[{"t": "soon"}, "x"]').decode()
    for params in [
        {"limit": 5},
        {"limit": 0},
        {"cursor": "garbage"},
        {"cursor": "!!!"},
        {"cursor": forged_value},
        {"cursor": "x" * 1001},
    ]:
        response = client.get(f"{AUTH}/sessions", params=params, headers=me.headers)
        assert response.status_code == 422, (params, response.text)
        assert error_of(response)["code"] == "validation_error", params
    assert client.get(f"{AUTH}/sessions", params={"limit": 4}, headers=me.headers).is_success


def test_logout_clears_both_cookies_and_closes_the_session(client: TestClient) -> None:
    register(client, "alice")
    old_access = set_cookies(login(client, "alice"))["access_token"].value
    response = client.post(f"{AUTH}/logout", headers=origin_of(client))
    assert response.status_code == 204
    cleared = set_cookies(response)
    for name, path in [("access_token", "/"), ("refresh_token", "/api/v1/auth")]:
        assert cleared[name].value == ""
        assert cleared[name].attributes["max-age"] == "0"
        assert cleared[name].attributes["path"] == path
    assert client.get(f"{AUTH}/session").status_code == 401
    closed = client.get(f"{AUTH}/session", headers={"Authorization": f"Bearer {old_access}"})
    assert closed.status_code == 401


# --- non-browser clients -------------------------------------------------------------------


def test_bearer_clients_sign_in_with_a_form_and_refresh_with_a_json_body(
    client: TestClient,
) -> None:
    user_id = register(client, "alice")
    response = client.post(f"{AUTH}/token", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == []
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    ttl = container_of(client).settings.access_token_ttl_seconds
    assert ttl - 2 <= body["expires_in"] <= ttl
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get(f"{AUTH}/session", headers=bearer).json()["user"]["id"] == str(user_id)
    me = client.get(f"{API}/me", headers={**bearer, "X-Min-Position": position(response)})
    assert me.status_code == 200

    refreshed = client.post(f"{AUTH}/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.headers.get_list("set-cookie") == []
    newer = refreshed.json()
    assert newer["refresh_token"] != body["refresh_token"]
    new_bearer = {"Authorization": f"Bearer {newer['access_token']}"}
    assert client.get(f"{AUTH}/session", headers=new_bearer).status_code == 200

    reuse = client.post(f"{AUTH}/refresh", json={"refresh_token": body["refresh_token"]})
    assert reuse.status_code == 401
    latest = client.post(f"{AUTH}/refresh", json={"refresh_token": newer["refresh_token"]})
    assert latest.status_code == 401
    assert client.get(f"{AUTH}/session", headers=new_bearer).status_code == 401


def test_a_refresh_without_a_valid_token_is_unauthenticated(client: TestClient) -> None:
    for body in [{}, {"refresh_token": "garbage"}, {"refresh_token": f"{uuid4().hex}.x"}, []]:
        response = client.post(f"{AUTH}/refresh", json=body)
        assert response.status_code == 401, body
        assert error_of(response)["code"] == "unauthenticated"
    empty = client.post(f"{AUTH}/refresh")
    assert empty.status_code == 401


def test_wrong_credentials_are_unauthenticated_without_saying_which_part_was_wrong(
    client: TestClient,
) -> None:
    register(client, "alice")
    wrong_password = client.post(f"{AUTH}/token", data={"username": "alice", "password": "nope"})
    unknown_user = client.post(f"{AUTH}/token", data={"username": "nobody", "password": "nope"})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert error_of(wrong_password) == error_of(unknown_user)


# --- sliding renewal -----------------------------------------------------------------------


def test_an_access_cookie_close_to_expiry_is_renewed_on_a_request(serve: Serve) -> None:
    client = serve(access_token_ttl_seconds=30, access_token_renew_within_seconds=3600)
    register(client, "alice")
    original = set_cookies(login(client, "alice"))["access_token"].value
    response = client.get(f"{AUTH}/session")
    assert response.status_code == 200
    renewed = set_cookies(response)["access_token"]
    assert renewed.value and renewed.value != original
    assert "httponly" in renewed.flags and renewed.attributes["path"] == "/"
    claims = jwt.decode(renewed.value, options={"verify_signature": False})
    assert claims["sid"] == jwt.decode(original, options={"verify_signature": False})["sid"]
    # The renewed cookie works on the query side too, which renews it in its turn
    # (once the users projection holds alice: the projectors run in the background).
    caught_up = {"X-Min-Position": str(container_of(client).app.head)}
    me = client.get(f"{API}/me", headers=caught_up)
    assert me.status_code == 200 and "access_token" in set_cookies(me)

    bearer = bearer_login(client, "alice")
    assert set_cookies(client.get(f"{API}/me", headers=bearer.headers)) == {}


def test_no_access_token_outlives_its_session(serve: Serve) -> None:
    client = serve(
        access_token_ttl_seconds=3600,
        access_token_renew_within_seconds=3600,
        refresh_token_ttl_seconds=60,
    )
    register(client, "alice")
    cookies = set_cookies(login(client, "alice"))
    session_ends = int(cookies["refresh_token"].attributes["max-age"])
    issued = jwt.decode(cookies["access_token"].value, options={"verify_signature": False})
    assert issued["exp"] - issued["iat"] <= session_ends + 1
    # A token already as long-lived as its session is not renewed: it could not live longer.
    assert "access_token" not in set_cookies(client.get(f"{AUTH}/session"))


def test_a_closed_session_is_not_renewed(serve: Serve) -> None:
    client = serve(access_token_ttl_seconds=30, access_token_renew_within_seconds=3600)
    register(client, "alice")
    login(client, "alice")
    phone = bearer_login(client, "alice")
    session_id = jwt.decode(phone.access_token, options={"verify_signature": False})["sid"]
    assert client.delete(f"{AUTH}/sessions/{session_id}", headers=phone.headers).status_code == 204
    stolen = client.get(f"{API}/me", headers={"Cookie": f"access_token={phone.access_token}"})
    assert "access_token" not in set_cookies(stolen)


# --- cross-site request defence ------------------------------------------------------------


def test_cookie_authenticated_unsafe_requests_need_an_allowed_origin(serve: Serve) -> None:
    client = serve(cors_origins="https://app.example.com")
    register(client, "alice")
    login(client, "alice")
    rename = {"username": "alicia"}

    for headers in [{}, {"Origin": "https://evil.example"}, {"Origin": "null"}]:
        refused = client.patch(f"{API}/users/me", json=rename, headers=headers)
        assert refused.status_code == 403, headers
        assert error_of(refused)["code"] == "forbidden"
    foreign_referer = {"Referer": "https://evil.example/page"}
    assert client.patch(f"{API}/users/me", json=rename, headers=foreign_referer).status_code == 403
    assert client.post(f"{AUTH}/refresh").status_code == 403
    assert (
        client.post(f"{AUTH}/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    )

    referer = client.patch(
        f"{API}/users/me",
        headers={"Referer": "http://testserver/settings"},
        json={"username": "al1"},
    )
    assert referer.status_code == 200
    allowed = client.patch(
        f"{API}/users/me",
        headers={"Origin": "https://app.example.com"},
        json={"username": "al2"},
    )
    assert allowed.status_code == 200
    # Safe methods need no Origin.
    assert client.get(f"{AUTH}/session").status_code == 200


def test_bearer_requests_need_no_origin(client: TestClient) -> None:
    register(client, "alice")
    tokens = bearer_login(client, "alice")
    changed = client.patch(f"{API}/users/me", json={"username": "alicia"}, headers=tokens.headers)
    assert changed.status_code == 200
    logged_out = client.post(f"{AUTH}/logout", headers=tokens.headers)
    assert logged_out.status_code == 204


# --- forged tokens -------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(real: str, key: str, other_user: UUID) -> dict[str, str]:
    header, payload, signature = real.split(".")
    claims = jwt.decode(real, options={"verify_signature": False})
    now = int(datetime.now(UTC).timestamp())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = {**claims, "iat": now - 3600, "exp": now - 60}
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, no dot": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}",
        "tampered payload": f"{header}.{_b64({**claims, 'sub': str(other_user)})}.{signature}",
        "tampered roles": f"{header}.{_b64({**claims, 'roles': ['admin']})}.{signature}",
        "expired": jwt.encode(expired, key, algorithm="HS256"),
        "garbage": "garbage",
        "three garbage parts": "a.b.c",
        "empty signature": f"{header}.{payload}.",
        "wrong key": jwt.encode(
            claims, "another key entirely, 48 chars long....", algorithm="HS256"
        ),
        "HS512 with the real key": jwt.encode(claims, key, algorithm="HS512"),
        "RS256": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "RS256 header, HS256 signature": (
            f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{payload}."
            + jwt.encode(claims, key, algorithm="HS256").split(".")[2]
        ),
        "other audience": jwt.encode({**claims, "aud": "someone-else"}, key, algorithm="HS256"),
        "no session": jwt.encode(
            {k: v for k, v in claims.items() if k != "sid"}, key, algorithm="HS256"
        ),
        "subject not a uuid": jwt.encode({**claims, "sub": "alice"}, key, algorithm="HS256"),
    }


def test_forged_or_expired_access_tokens_are_all_refused(client: TestClient) -> None:
    register(client, "alice")
    bob = register(client, "bob")
    real = bearer_login(client, "alice").access_token
    key = container_of(client).settings.signing_key()
    assert client.get(f"{AUTH}/session", headers={"Authorization": f"Bearer {real}"}).is_success

    outcomes = {}
    for name, forged in _forgeries(real, key, bob).items():
        for where, headers in [
            ("bearer", {"Authorization": f"Bearer {forged}"}),
            ("cookie", {"Cookie": f"access_token={forged}"}),
        ]:
            for path in (f"{AUTH}/session", f"{API}/me"):
                response = client.get(path, headers=headers)
                outcomes[(name, where, path)] = (response.status_code, error_of(response)["code"])
    assert set(outcomes.values()) == {(401, "unauthenticated")}, {
        k: v for k, v in outcomes.items() if v != (401, "unauthenticated")
    }


def test_a_malformed_authorization_header_is_unauthenticated(client: TestClient) -> None:
    for header in ["Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer    ", "Token abc"]:
        response = client.get(f"{AUTH}/session", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"


# --- errors --------------------------------------------------------------------------------


def test_unknown_routes_and_wrong_methods_answer_with_the_error_envelope(
    client: TestClient,
) -> None:
    for method, path in [
        ("GET", "/nowhere"),
        ("GET", f"{API}/nowhere"),
        ("POST", f"{API}/nowhere"),
        ("GET", f"{AUTH}/nowhere"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert error_of(response)["code"] == "not_found"
    for method, path in [("GET", f"{AUTH}/register"), ("PUT", f"{API}/users/me")]:
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert error_of(response)["code"] == "method_not_allowed"


def test_a_body_that_is_not_json_is_a_validation_error(client: TestClient) -> None:
    for path in [f"{AUTH}/register", f"{AUTH}/login", f"{AUTH}/token"]:
        response = client.post(
            path, content=b'{"username": "alice",', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, path
        assert error_of(response)["code"] == "validation_error"


DEEPLY_NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("route", ["login", "token", "refresh"])
def test_a_json_body_nested_too_deeply_is_a_validation_error(
    client: TestClient, route: str
) -> None:
    response = client.post(
        f"{AUTH}/{route}", content=DEEPLY_NESTED, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["fields"]] == ["body"]


def test_validation_errors_list_the_offending_fields(client: TestClient) -> None:
    missing = client.post(f"{AUTH}/register", json={"username": "alice"})
    assert missing.status_code == 422
    fields = {f["field"] for f in error_of(missing)["fields"]}
    assert fields == {"email", "password"}

    for body, field in [
        ({"username": "a", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice", "email": "not an email", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "al ice", "email": "a@example.com", "password": PASSWORD}, "username"),
    ]:
        response = client.post(f"{AUTH}/register", json=body)
        assert response.status_code == 422
        assert [f["field"] for f in error_of(response)["fields"]] == [field]
    form = client.post(f"{AUTH}/login", data={"username": "alice"})
    assert form.status_code == 422
    assert "password" in {f["field"] for f in error_of(form)["fields"]}


def test_oversize_bodies_are_refused_whether_declared_or_chunked(serve: Serve) -> None:
    client = serve(max_json_body_bytes=1024)
    big = {"username": "alice", "email": "a@example.com", "password": "x" * 2000}
    declared = client.post(f"{AUTH}/register", json=big)
    assert declared.status_code == 413
    assert error_of(declared)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 256):
            yield payload[start : start + 256]

    for path in (f"{AUTH}/register", f"{AUTH}/login", f"{AUTH}/refresh"):
        chunked = client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413, (path, chunked.text)
        assert error_of(chunked)["code"] == "payload_too_large"
    nothing = client.post(f"{AUTH}/token", data={"username": "alice", "password": "x" * 2000})
    assert nothing.status_code == 413
    assert client.get(f"{API}/users/{uuid4()}").status_code == 404


def test_a_query_waits_for_its_position_and_gives_up_with_projection_lag(serve: Serve) -> None:
    client = serve(min_position_wait_seconds=0.2)
    user_id = register(client, "alice")
    head = container_of(client).app.head
    ahead = client.get(f"{API}/users/{user_id}", headers={"X-Min-Position": str(head + 1000)})
    assert ahead.status_code == 503
    error = error_of(ahead)
    assert error["code"] == "projection_lag"
    assert ahead.headers["retry-after"]
    assert container_of(client).progress.watching() == 0  # the given-up wait left nothing behind
    reached = client.get(f"{API}/users/{user_id}", headers={"X-Min-Position": str(head)})
    assert reached.status_code == 200
    bad = client.get(f"{API}/users/{user_id}", headers={"X-Min-Position": "soon"})
    assert bad.status_code == 422


def test_the_password_never_appears_in_an_answer_even_when_changed(client: TestClient) -> None:
    register(client, "alice")
    login(client, "alice")
    changed = client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "new password 42"},
        headers=origin_of(client),
    )
    assert changed.status_code == 204
    wrong = client.post(
        f"{API}/users/me/password",
        json={"current_password": PASSWORD, "new_password": "new password 42"},
        headers=origin_of(client),
    )
    assert wrong.status_code == 422
    assert client.post(
        f"{AUTH}/token", data={"username": "alice", "password": "new password 42"}
    ).is_success
    # The serve fixture checks every response and log line of this test for leaks.


def test_the_refresh_cookie_never_outlives_the_session(client: TestClient) -> None:
    register(client, "alice")
    cookies = set_cookies(login(client, "alice"))
    ttl = container_of(client).settings.refresh_token_ttl_seconds
    max_age = int(cookies["refresh_token"].attributes["max-age"])
    assert ttl - 5 <= max_age <= ttl
