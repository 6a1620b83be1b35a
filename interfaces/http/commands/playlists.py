"""``/api/v1/playlists``: create, change, delete, and add, remove or move entries.

Every change may carry ``If-Match: <version>`` (the ``version`` of the
playlist as last read, also sent as its ``ETag``): the change is then applied
only if nobody changed the playlist since, else 412 ``precondition_failed``.
Without it, concurrent changes are all applied.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, Field

from application.playlists import PlaylistChanged
from application.unit_of_work import Committed
from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep
from interfaces.http.errors import ApiError
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1/playlists", tags=["playlists"], route_class=DirectRoute)

_ENTITY_TAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def if_match_version(
    if_match: Annotated[
        str | None,
        Header(description="The playlist version the change expects (its ETag)."),
    ] = None,
) -> int | None:
    """The version an ``If-Match`` header names; None without one (or with ``*``)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ENTITY_TAG.match(if_match.strip())
    if match is None:
        raise ApiError(
            422,
            "validation_error",
            'If-Match must be a playlist version, such as 3 or "3"',
            fields=[{"field": "If-Match", "message": "must be a version number"}],
        )
    return int(match.group(1))


IfMatch = Annotated[int | None, Depends(if_match_version)]


def etag(version: int) -> str:
    """The entity tag of a playlist version."""
    return f'"{version}"'


class PlaylistCreate(BaseModel):
    """A new playlist."""

    name: str = Field(max_length=10_000)
    description: str | None = Field(None, max_length=1_000_000)
    visibility: Literal["public", "private"] = "public"


class PlaylistPatch(BaseModel):
    """Changes to a playlist; absent fields stay as they are."""

    name: str | None = Field(None, max_length=10_000)
    description: str | None = Field(None, max_length=1_000_000)
    visibility: Literal["public", "private"] | None = None


class EntryCreate(BaseModel):
    """A track to put into a playlist, at the end unless a position is given."""

    track_id: UUID
    position: int | None = Field(None, ge=0, le=10_000_000)


class EntryMove(BaseModel):
    """Where to move an entry (0-based)."""

    to_position: int = Field(ge=0, le=10_000_000)


class Versioned(BaseModel):
    """A playlist after a change, with its new version (its next ``If-Match``)."""

    id: UUID
    version: int


class EntryCreated(BaseModel):
    """The new entry, where it went, and the playlist's new version."""

    id: UUID
    playlist_id: UUID
    position: int
    version: int


def _changed(committed: Committed[PlaylistChanged], status_code: int = 200) -> Response:
    value = committed.value
    response = committed_response(
        committed,
        status_code,
        Versioned(id=value.id, version=value.version).model_dump(mode="json"),
    )
    response.headers["ETag"] = etag(value.version)
    return response


@router.post("", status_code=201, response_model=Versioned, summary="Create a playlist")
def create_playlist(body: PlaylistCreate, caller: CurrentCaller, app: AppDep) -> Response:
    """Names are unique per owner, case-insensitively (409 otherwise)."""
    committed = app.create_playlist(caller.user_id, body.name, body.description, body.visibility)
    return _changed(committed, 201)


@router.patch("/{playlist_id}", response_model=Versioned, summary="Change a playlist")
def change_playlist(
    playlist_id: UUID,
    body: PlaylistPatch,
    caller: CurrentCaller,
    app: AppDep,
    expected_version: IfMatch,
) -> Response:
    """Owner only: name, description and/or visibility."""
    if body.name is None and body.description is None and body.visibility is None:
        raise ApiError(
            422,
            "validation_error",
            "give a name, a description or a visibility to change",
            fields=[{"field": "body", "message": "name, description or visibility is required"}],
        )
    committed = app.change_playlist(
        caller.user_id,
        playlist_id,
        name=body.name,
        description=body.description,
        visibility=body.visibility,
        expected_version=expected_version,
    )
    return _changed(committed)


@router.delete("/{playlist_id}", status_code=204, summary="Delete a playlist")
def delete_playlist(
    playlist_id: UUID, caller: CurrentCaller, app: AppDep, expected_version: IfMatch
) -> Response:
    """Owner only; the name becomes free again."""
    committed = app.delete_playlist(caller.user_id, playlist_id, expected_version)
    return committed_response(committed, 204)


@router.post(
    "/{playlist_id}/entries",
    status_code=201,
    response_model=EntryCreated,
    summary="Add a track to a playlist",
)
def add_entry(
    playlist_id: UUID,
    body: EntryCreate,
    caller: CurrentCaller,
    app: AppDep,
    expected_version: IfMatch,
) -> Response:
    """At ``position`` (0-based), or at the end. The same track may be added several times."""
    committed = app.add_entry(
        caller.user_id, playlist_id, body.track_id, body.position, expected_version
    )
    added = committed.value
    response = committed_response(
        committed,
        201,
        EntryCreated(
            id=added.id,
            playlist_id=added.playlist_id,
            position=added.position,
            version=added.version,
        ).model_dump(mode="json"),
    )
    response.headers["ETag"] = etag(added.version)
    return response


@router.delete(
    "/{playlist_id}/entries/{entry_id}",
    response_model=Versioned,
    summary="Remove an entry from a playlist",
)
def remove_entry(
    playlist_id: UUID,
    entry_id: UUID,
    caller: CurrentCaller,
    app: AppDep,
    expected_version: IfMatch,
) -> Response:
    """The entries after it move up one."""
    return _changed(app.remove_entry(caller.user_id, playlist_id, entry_id, expected_version))


@router.post(
    "/{playlist_id}/entries/{entry_id}/move",
    response_model=Versioned,
    summary="Move an entry within a playlist",
)
def move_entry(
    playlist_id: UUID,
    entry_id: UUID,
    body: EntryMove,
    caller: CurrentCaller,
    app: AppDep,
    expected_version: IfMatch,
) -> Response:
    """To ``to_position`` (0-based); the entries in between shift by one."""
    committed = app.move_entry(
        caller.user_id, playlist_id, entry_id, body.to_position, expected_version
    )
    return _changed(committed)
