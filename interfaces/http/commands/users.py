"""``/api/v1/users/me``: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep, SettingsDep
from interfaces.http.errors import ApiError
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller, clear_session_cookies

router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=DirectRoute)


class IdentityChange(BaseModel):
    """A new username and/or email."""

    username: str | None = Field(None, max_length=512)
    email: str | None = Field(None, max_length=512)


class PasswordChange(BaseModel):
    """The current password and the new one."""

    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


@router.patch("/me", summary="Change your username and/or email")
def change_identity(body: IdentityChange, caller: CurrentCaller, app: AppDep) -> Response:
    """Both stay unique under concurrent requests; the old names are freed."""
    if body.username is None and body.email is None:
        raise ApiError(
            422,
            "validation_error",
            "give a username or an email to change",
            fields=[{"field": "username", "message": "username or email is required"}],
        )
    committed = app.change_identity(caller.user_id, body.username, body.email)
    return committed_response(committed, 200, {"id": str(committed.value)})


@router.post("/me/password", status_code=204, summary="Change your password")
async def change_password(body: PasswordChange, caller: CurrentCaller, app: AppDep) -> Response:
    """The current password must be right."""
    committed = await run_in_threadpool(
        app.change_password, caller.user_id, body.current_password, body.new_password
    )
    return committed_response(committed, 204)


@router.delete("/me", status_code=204, summary="Delete your account")
def delete_account(caller: CurrentCaller, app: AppDep, settings: SettingsDep) -> Response:
    """Personal data becomes unrecoverable; your public content stays, as a deleted user's."""
    response = committed_response(app.delete_user(caller.user_id), 204)
    clear_session_cookies(response, settings)
    return response
