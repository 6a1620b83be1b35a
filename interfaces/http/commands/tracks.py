"""``/api/v1/tracks``: upload (streamed multipart), edit, delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from application.tracks import TrackFields
from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep, ContainerDep, SettingsDep
from interfaces.http.errors import ApiError
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller
from interfaces.http.uploads import receive_upload, spool_directory

router = APIRouter(prefix="/api/v1/tracks", tags=["tracks"], route_class=DirectRoute)

_TEXT_FIELDS = ("title", "artist", "album", "genre")
_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **{name: {"type": "string"} for name in _TEXT_FIELDS},
                        "year": {"type": "integer"},
                    },
                }
            }
        },
    }
}


class TrackCreated(BaseModel):
    """The new track's id."""

    id: UUID


class TrackEdit(BaseModel):
    """The fields to change; a field left out stays as it is, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=4096)
    artist: str | None = Field(None, max_length=4096)
    album: str | None = Field(None, max_length=4096)
    genre: str | None = Field(None, max_length=4096)
    year: int | None = None


def _year(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    # int() alone also reads "2_000", "+2000" and digits of other scripts ("٢٠٢٠").
    if text.isascii() and text.isdigit():
        return int(text)
    raise ApiError(
        422,
        "validation_error",
        "year: must be a whole number",
        fields=[{"field": "year", "message": "must be a whole number"}],
    )


@router.post(
    "",
    status_code=201,
    response_model=TrackCreated,
    summary="Upload a track",
    openapi_extra=_UPLOAD_SCHEMA,
    responses={
        409: {"description": "`duplicate_track`: the same bytes were already uploaded"},
        413: {"description": "`payload_too_large`"},
        415: {"description": "`unsupported_media_type`: the content is not accepted audio"},
        422: {"description": "`corrupt_media` or `validation_error`"},
        503: {"description": "`storage_unavailable` (with Retry-After)"},
    },
)
async def upload_track(
    request: Request,
    caller: CurrentCaller,
    app: AppDep,
    settings: SettingsDep,
    container: ContainerDep,
) -> Response:
    """Multipart ``file`` plus optional ``title``, ``artist``, ``album``, ``genre``, ``year``.

    The type is judged from the content, never from the name or declared type;
    fields left out are taken from the file's tags (the title, failing that,
    from the file name).
    """
    # While storage is known to be down, refuse before reading a byte of the body.
    container.blobs.ensure_available("upload")
    received = await receive_upload(
        request,
        spool=spool_directory(settings.data_dir),
        max_file_bytes=settings.max_track_bytes,
        file_field="file",
        text_fields=frozenset((*_TEXT_FIELDS, "year")),
    )
    try:
        if received.file is None:
            raise ApiError(
                422,
                "validation_error",
                "file: is required",
                fields=[{"field": "file", "message": "is required"}],
            )
        fields = TrackFields(
            **{name: received.fields.get(name) for name in _TEXT_FIELDS},
            year=_year(received.fields.get("year")),
        )
        committed = await run_in_threadpool(app.upload_track, caller.user_id, received.file, fields)
    finally:
        received.discard()
    return committed_response(committed, 201, {"id": str(committed.value)})


@router.patch("/{track_id}", response_model=TrackCreated, summary="Edit a track's metadata")
def edit_track(track_id: UUID, body: TrackEdit, caller: CurrentCaller, app: AppDep) -> Response:
    """Uploader only: others get 403, anonymous callers 401."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ApiError(
            422,
            "validation_error",
            "give at least one of title, artist, album, genre, year",
            fields=[{"field": "body", "message": "no field to change"}],
        )
    committed = app.edit_track(caller.user_id, track_id, changes)
    return committed_response(committed, 200, {"id": str(committed.value)})


@router.delete("/{track_id}", status_code=204, summary="Delete a track")
def delete_track(track_id: UUID, caller: CurrentCaller, app: AppDep) -> Response:
    """Uploader only. The track leaves the listings at once; its file is removed afterwards."""
    return committed_response(app.delete_track(caller.user_id, track_id), 204)
