"""``/api/v1/users/{id}`` and ``/api/v1/me``."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from application.errors import NotFound
from interfaces.http.deps import QueriesDep
from interfaces.http.queries.consistency import reads_from
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1", tags=["users"], route_class=DirectRoute)


class PublicProfileOut(BaseModel):
    """A user as anyone sees them (no email)."""

    id: UUID
    username: str
    created_at: datetime
    deleted: bool = False


class OwnProfileOut(BaseModel):
    """A user as they see themself."""

    id: UUID
    username: str
    email: str | None
    roles: list[str]
    created_at: datetime
    updated_at: datetime


@router.get(
    "/users/{user_id}",
    response_model=PublicProfileOut,
    dependencies=[Depends(reads_from("users"))],
    summary="A user's public profile",
)
def public_profile(user_id: UUID, queries: QueriesDep) -> PublicProfileOut:
    """Deleted users keep a profile named "deleted user", so their content stays attributed."""
    profile = queries.users.public_profile(user_id)
    if profile is None:
        raise NotFound("user not found")
    return PublicProfileOut(
        id=profile.id,
        username=profile.username,
        created_at=profile.created_at,
        deleted=profile.deleted,
    )


@router.get(
    "/me",
    response_model=OwnProfileOut,
    dependencies=[Depends(reads_from("users"))],
    summary="Your own profile, with email",
)
def own_profile(caller: CurrentCaller, queries: QueriesDep) -> OwnProfileOut:
    """401 when not signed in."""
    profile = queries.users.own_profile(caller.user_id)
    if profile is None:
        raise NotFound("user not found")
    return OwnProfileOut(
        id=profile.id,
        username=profile.username,
        email=profile.email,
        roles=profile.roles,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )
