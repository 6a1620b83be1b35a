"""Accounts and sessions over HTTP, for end-to-end tests.

Works with any httpx-style client: ``fastapi.testclient.TestClient`` (base URL
``http://testserver``) or ``httpx.Client`` against a live server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import httpx

PASSWORD = "correct horse battery"
API = "/api/v1"

# TestClient is an httpx.Client too.
Client = httpx.Client


def origin_of(client: Client) -> dict[str, str]:
    """The ``Origin`` header a browser on the service's own origin sends (CSRF check)."""
    url = client.base_url
    port = f":{url.port}" if url.port else ""
    return {"Origin": f"{url.scheme}://{url.host}{port}"}


def register(
    client: Client, username: str, *, email: str | None = None, password: str = PASSWORD
) -> UUID:
    """Register a user; returns its id (fails the test on anything but 201)."""
    response = client.post(
        f"{API}/auth/register",
        json={
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
        },
    )
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


def login(client: Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """Browser sign-in (form, like an OAuth2 password form); the client keeps the cookies."""
    response = client.post(
        f"{API}/auth/login",
        data={"username": username, "password": password},
        headers=origin_of(client),
    )
    assert response.status_code == 200, response.text
    return response


@dataclass(frozen=True)
class Tokens:
    """A non-browser sign-in."""

    access_token: str
    refresh_token: str
    position: int

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header."""
        return {"Authorization": f"Bearer {self.access_token}"}


def bearer_login(client: Client, username: str, password: str = PASSWORD) -> Tokens:
    """Sign in at ``/auth/token`` (form fields); no cookies are involved."""
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(
        body["access_token"], body["refresh_token"], int(response.headers["x-event-position"])
    )


@dataclass
class SetCookie:
    """One ``Set-Cookie`` header, parsed."""

    name: str
    value: str
    attributes: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    """The response's ``Set-Cookie`` headers by cookie name (attribute names lower-cased)."""
    found: dict[str, SetCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        cookie = SetCookie(name, value.strip('"'))
        for part in rest:
            key, has_value, attribute = part.partition("=")
            if has_value:
                cookie.attributes[key.lower()] = attribute
            elif key:
                cookie.flags.add(key.lower())
        found[name] = cookie
    return found


class ResponseLog:
    """Every response a client received, read in full, for checks across a whole test."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def attach(self, client: Client) -> None:
        """Record the client's responses from now on."""
        client.event_hooks["response"] = [*client.event_hooks["response"], self._record]

    def _record(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def leaks(self, secrets: list[str]) -> list[str]:
        """Lines describing responses that show a secret, an Argon2 hash or a stack trace."""
        markers = [*secrets, "$argon2", "Traceback (most recent call last)", 'File "/']
        found: list[str] = []
        for response in self.responses:
            text = " ".join(f"{k}: {v}" for k, v in response.headers.items()) + response.text
            found.extend(
                f"{response.request.method} {response.request.url.path} "
                f"{response.status_code} shows {marker!r}"
                for marker in markers
                if marker in text
            )
            if response.status_code >= 500 and response.status_code != 503:
                found.append(f"{response.request.url.path} answered {response.status_code}")
        return found
