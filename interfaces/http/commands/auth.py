"""``/api/v1/auth``: sign in, tokens, refresh, sign out, sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from application.errors import Unauthenticated
from application.sessions import SignedIn
from infrastructure.bootstrap import Container
from interfaces.http.commands.responses import POSITION_HEADER, committed_response
from interfaces.http.deps import AppDep, ContainerDep, QueriesDep
from interfaces.http.errors import ApiError, unparseable_body
from interfaces.http.queries.consistency import reads_from
from interfaces.http.queries.params import Cursor, Limit, page_limit
from interfaces.http.routing import DirectRoute
from interfaces.http.security import (
    REFRESH_COOKIE,
    CurrentCaller,
    OptionalCaller,
    check_origin,
    clear_session_cookies,
    set_session_cookies,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=DirectRoute)


class RegisterBody(BaseModel):
    """A new account."""

    username: str = Field(max_length=512)
    email: str = Field(max_length=512)
    password: str = Field(max_length=4096)


class Credentials(BaseModel):
    """A username and password, from a form or JSON."""

    username: str = Field(min_length=1, max_length=512)
    password: str = Field(min_length=1, max_length=4096)


class CreatedId(BaseModel):
    """The id of what a command created."""

    id: UUID


class UserRef(BaseModel):
    """A user, briefly."""

    id: UUID
    username: str


class SignInResult(BaseModel):
    """A browser sign-in: the tokens are in the cookies."""

    user: UserRef
    access_expires_at: datetime


class TokenResult(BaseModel):
    """A non-browser sign-in (OAuth2 password grant style)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str


class SessionUser(BaseModel):
    """The signed-in user."""

    id: UUID
    username: str
    email: str


class SessionState(BaseModel):
    """The current session."""

    authenticated: bool
    user: SessionUser
    access_expires_at: datetime


class SessionItem(BaseModel):
    """One open session."""

    id: UUID
    client: str
    client_family: str
    created_at: datetime
    last_refreshed_at: datetime | None
    expires_at: datetime
    current: bool


class SessionList(BaseModel):
    """The caller's open sessions."""

    items: list[SessionItem]
    next_cursor: str | None = None


# json.loads raises RecursionError, not ValueError, for a body nested past its limit.
_TOO_DEEP = "is nested too deeply"


async def _credentials(request: Request) -> Credentials:
    """Read credentials from an OAuth2-style form or a JSON body."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            raw: Any = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            raw = await request.json()
        return Credentials.model_validate(raw)
    except ValidationError as error:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        raise ApiError(
            422, "validation_error", "username and password are required", fields=fields
        ) from None
    except ValueError:
        raise ApiError(
            422, "validation_error", "send the credentials as a form or a JSON object"
        ) from None
    except RecursionError:
        raise unparseable_body(_TOO_DEEP) from None


def _access_token(container: Container, signed_in: SignedIn) -> tuple[str, datetime, int]:
    now = container.clock.now()
    token, expires_at = container.tokens.issue(
        signed_in.user_id,
        signed_in.username,
        signed_in.session_id,
        signed_in.roles,
        now,
        not_after=signed_in.refresh_expires_at,
    )
    return token, expires_at, int((expires_at - now).total_seconds())


def _browser_response(container: Container, signed_in: SignedIn, position: int) -> Response:
    token, expires_at, max_age = _access_token(container, signed_in)
    body = SignInResult(
        user=UserRef(id=signed_in.user_id, username=signed_in.username),
        access_expires_at=expires_at,
    )
    response = JSONResponse(body.model_dump(mode="json"), headers={POSITION_HEADER: str(position)})
    refresh_max_age = int((signed_in.refresh_expires_at - container.clock.now()).total_seconds())
    set_session_cookies(
        response, container.settings, token, max_age, signed_in.refresh_token, refresh_max_age
    )
    return response


def _token_response(container: Container, signed_in: SignedIn, position: int) -> Response:
    token, _, max_age = _access_token(container, signed_in)
    body = TokenResult(
        access_token=token, expires_in=max_age, refresh_token=signed_in.refresh_token
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        headers={POSITION_HEADER: str(position), "Cache-Control": "no-store"},
    )


def _client(request: Request) -> str:
    return request.headers.get("user-agent", "unknown client")


@router.post("/register", status_code=201, response_model=CreatedId, summary="Create an account")
def register(body: RegisterBody, app: AppDep) -> Response:
    """Usernames and emails are unique (case-insensitively), even under concurrent requests."""
    committed = app.register_user(body.username, body.email, body.password)
    return committed_response(committed, 201, {"id": str(committed.value)})


@router.post("/login", response_model=SignInResult, summary="Sign in (browser: sets cookies)")
async def login(request: Request, container: ContainerDep) -> Response:
    """Form (OAuth2 password style) or JSON credentials; sets the session cookies.

    The password check costs tens of milliseconds of CPU, so it runs off the event loop.
    """
    credentials = await _credentials(request)
    committed = await run_in_threadpool(
        container.app.open_session, credentials.username, credentials.password, _client(request)
    )
    return _browser_response(container, committed.value, committed.position)


@router.post("/token", response_model=TokenResult, summary="Sign in (non-browser: bearer tokens)")
async def token(request: Request, container: ContainerDep) -> Response:
    """OAuth2 password grant: form fields ``username`` and ``password``; sets no cookies."""
    credentials = await _credentials(request)
    committed = await run_in_threadpool(
        container.app.open_session, credentials.username, credentials.password, _client(request)
    )
    return _token_response(container, committed.value, committed.position)


class RefreshBody(BaseModel):
    """A refresh token, for clients that keep it themselves."""

    refresh_token: str = Field(max_length=512)


@router.post("/refresh", summary="Rotate the refresh token and get a new access token")
async def refresh(request: Request, container: ContainerDep) -> Response:
    """With the refresh cookie (browsers) or a JSON ``refresh_token`` (other clients).

    A refresh token that was already rotated revokes its whole session.
    """
    cookie = request.cookies.get(REFRESH_COOKIE)
    if cookie:
        check_origin(request, container.settings)
        committed = await run_in_threadpool(container.app.refresh_session, cookie)
        return _browser_response(container, committed.value, committed.position)
    try:
        body = RefreshBody.model_validate(await request.json())
    except (ValueError, ValidationError):
        raise Unauthenticated("no refresh token") from None
    except RecursionError:
        raise unparseable_body(_TOO_DEEP) from None
    committed = await run_in_threadpool(container.app.refresh_session, body.refresh_token)
    return _token_response(container, committed.value, committed.position)


@router.post("/logout", status_code=204, summary="Sign out: revoke this session, clear cookies")
def logout(request: Request, container: ContainerDep, caller: OptionalCaller) -> Response:
    """Revokes the session of the refresh cookie, else the one of the access token."""
    cookie = request.cookies.get(REFRESH_COOKIE)
    if cookie:
        check_origin(request, container.settings)
        committed: Any = container.app.end_session(cookie)
    elif caller is not None:
        committed = container.app.revoke_session(caller.user_id, caller.session_id, "logout")
    else:
        raise Unauthenticated("not signed in")
    response = committed_response(committed, 204)
    clear_session_cookies(response, container.settings)
    return response


@router.get("/session", response_model=SessionState, summary="The current session")
def session(caller: CurrentCaller, app: AppDep) -> SessionState:
    """Validates the access token and its session; 401 when not signed in."""
    if not app.session_is_open(caller.session_id):
        raise Unauthenticated("this session is closed")
    account = app.account(caller.user_id)
    return SessionState(
        authenticated=True,
        user=SessionUser(id=account.id, username=account.username, email=account.email),
        access_expires_at=caller.expires_at,
    )


@router.get(
    "/sessions",
    response_model=SessionList,
    # A listing from a read model: X-Min-Position gives read-your-writes here too.
    dependencies=[Depends(reads_from("sessions"))],
    summary="The caller's open sessions",
)
def sessions(
    caller: CurrentCaller,
    queries: QueriesDep,
    container: ContainerDep,
    cursor: Cursor = None,
    limit: Limit = None,
) -> SessionList:
    """Open (not revoked, not expired) sessions, newest first; ``next_cursor`` pages on."""
    page = queries.sessions.open_page(
        caller.user_id,
        container.clock.now(),
        cursor=cursor,
        limit=page_limit(limit, container),
    )
    return SessionList(
        items=[
            SessionItem(
                id=r.id,
                client=r.client,
                client_family=r.client_family,
                created_at=r.created_at,
                last_refreshed_at=r.last_refreshed_at,
                expires_at=r.expires_at,
                current=r.id == caller.session_id,
            )
            for r in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.delete("/sessions/{session_id}", status_code=204, summary="Revoke one of your sessions")
def revoke(session_id: UUID, caller: CurrentCaller, app: AppDep) -> Response:
    """Someone else's session is 404."""
    return committed_response(app.revoke_session(caller.user_id, session_id, "revoked"), 204)
