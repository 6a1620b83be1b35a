"""Who is calling: access tokens from the cookie or the Authorization header.

Cookie-authenticated unsafe requests must come from an allowed origin (the
service's own, or one of the CORS origins): a defence against cross-site
request forgery on top of SameSite cookies. A cookie token close to expiry is
renewed on the way (sliding renewal), as long as its session is still open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from application.errors import Forbidden, Unauthenticated
from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from infrastructure.tokens import InvalidToken
from interfaces.http.deps import container_of
from interfaces.http.middleware import add_response_header

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
REFRESH_PATH = "/api/v1/auth"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """The signed-in user behind a request."""

    user_id: UUID
    username: str
    session_id: UUID
    roles: frozenset[str]
    expires_at: datetime
    via_cookie: bool


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse an unsafe cookie-authenticated request from a foreign or unknown origin."""
    if request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if referer is None:
            raise Forbidden("cross-site request refused: no Origin or Referer header")
        try:
            parts = urlsplit(referer)
        except ValueError:
            raise Forbidden("cross-site request refused: the Referer is not a URL") from None
        origin = f"{parts.scheme}://{parts.netloc}"
    origin = origin.rstrip("/")
    host = request.headers.get("host", "")
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        raise Forbidden("cross-site request refused: the Origin is not a URL") from None
    if netloc == host or origin in settings.cors_origins:
        return
    raise Forbidden(f"cross-site request refused: origin {origin} is not allowed")


def _cookie_header(name: str, value: str, max_age: int, path: str, settings: Settings) -> str:
    carrier = Response()
    carrier.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=settings.cookie_secure,
        httponly=True,
        samesite=settings.cookie_samesite,
    )
    return MutableHeaders(raw=carrier.raw_headers)["set-cookie"]


def set_session_cookies(
    response: Response,
    settings: Settings,
    access_token: str,
    access_max_age: int,
    refresh_token: str | None = None,
    refresh_max_age: int = 0,
) -> None:
    """Put the access (and refresh) cookies on a response."""
    response.headers.append(
        "set-cookie", _cookie_header(ACCESS_COOKIE, access_token, access_max_age, "/", settings)
    )
    if refresh_token is not None:
        response.headers.append(
            "set-cookie",
            _cookie_header(REFRESH_COOKIE, refresh_token, refresh_max_age, REFRESH_PATH, settings),
        )


def clear_session_cookies(response: Response, settings: Settings) -> None:
    """Expire both cookies."""
    response.headers.append("set-cookie", _cookie_header(ACCESS_COOKIE, "", 0, "/", settings))
    response.headers.append(
        "set-cookie", _cookie_header(REFRESH_COOKIE, "", 0, REFRESH_PATH, settings)
    )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def optional_caller(request: Request) -> Caller | None:
    """The caller, None when anonymous; a token that is presented must be valid.

    ``async``: verifying a token is a few microseconds of CPU, far less than a
    hop to the thread pool; only a sliding renewal, which reads the session
    store, goes to a thread.
    """
    container = container_of(request)
    token = _bearer(request)
    via_cookie = token is None
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE) or None
    if token is None:
        return None
    try:
        claims = container.tokens.verify(token)
    except InvalidToken:
        raise Unauthenticated("the access token is invalid or expired") from None
    if via_cookie:
        check_origin(request, container.settings)
    caller = Caller(
        claims.user_id,
        claims.username,
        claims.session_id,
        claims.roles,
        claims.expires_at,
        via_cookie,
    )
    if via_cookie and _renewal_due(container, caller):
        await run_in_threadpool(_renew, request, container, caller)
    return caller


def _renewal_due(container: Container, caller: Caller) -> bool:
    remaining = (caller.expires_at - container.clock.now()).total_seconds()
    return remaining <= container.settings.access_token_renew_within_seconds


def _renew(request: Request, container: Container, caller: Caller) -> None:
    now = container.clock.now()
    session_ends = container.app.session_expiry(caller.session_id)
    # Tokens carry whole seconds: compare at that grain.
    if session_ends is None or session_ends.replace(microsecond=0) <= caller.expires_at:
        return  # closed, or a new token could not live any longer than this one
    token, expires_at = container.tokens.issue(
        caller.user_id, caller.username, caller.session_id, caller.roles, now, session_ends
    )
    max_age = int((expires_at - now).total_seconds())
    add_response_header(
        request,
        "set-cookie",
        _cookie_header(ACCESS_COOKIE, token, max_age, "/", container.settings),
    )


async def require_caller(request: Request) -> Caller:
    """The caller; 401 when anonymous."""
    # Called, not declared as a sub-dependency: one level less for FastAPI to resolve.
    caller = await optional_caller(request)
    if caller is None:
        raise Unauthenticated("sign in first")
    return caller


OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
CurrentCaller = Annotated[Caller, Depends(require_caller)]
