"""``POST /api/v1/{tracks,playlists}/{id}/plays``: record one play by the caller.

For clients that decide for themselves what counts as a play; players that
report what they do use playback sessions (``/api/v1/playback``) instead.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel

from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1", tags=["listening"], route_class=DirectRoute)


class PlayRecorded(BaseModel):
    """The play just recorded."""

    id: UUID


@router.post(
    "/tracks/{track_id}/plays",
    status_code=201,
    response_model=PlayRecorded,
    summary="Record one play of a track",
)
async def play_track(track_id: UUID, caller: CurrentCaller, app: AppDep) -> Response:
    """404 for a deleted or unknown track."""
    committed = await app.record_play(caller.user_id, "track", track_id)
    return committed_response(committed, 201, {"id": str(committed.value)})


@router.post(
    "/playlists/{playlist_id}/plays",
    status_code=201,
    response_model=PlayRecorded,
    summary="Record one play of a playlist",
)
async def play_playlist(playlist_id: UUID, caller: CurrentCaller, app: AppDep) -> Response:
    """404 for a deleted, unknown or (someone else's) private playlist."""
    committed = await app.record_play(caller.user_id, "playlist", playlist_id)
    return committed_response(committed, 201, {"id": str(committed.value)})
