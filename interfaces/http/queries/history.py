"""``/api/v1/me/history``: the caller's plays, newest first (private to the caller)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from infrastructure.bootstrap import Container
from interfaces.http.deps import ContainerDep
from interfaces.http.json import OrjsonResponse
from interfaces.http.queries.consistency import reads_from
from interfaces.http.queries.kept import answer
from interfaces.http.queries.params import Cursor, Limit, page_limit
from interfaces.http.queries.playlists import PlaylistOut, playlists_json, tracks_json
from interfaces.http.queries.tracks import TrackOut
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1", tags=["listening"], route_class=DirectRoute)


class HistoryItemOut(BaseModel):
    """One play: of a track (``track``) or of a playlist (``playlist``).

    The track or playlist is null, and ``unavailable`` true, once it was
    deleted or hidden from the caller.
    """

    id: UUID
    played_at: datetime
    source: str
    unavailable: bool
    track: TrackOut | None = None
    playlist: PlaylistOut | None = None
    from_playlist_id: UUID | None = None


class HistoryPageOut(BaseModel):
    """A page of plays and the cursor of the next one."""

    items: list[HistoryItemOut]
    next_cursor: str | None


@router.get(
    "/me/history",
    response_model=HistoryPageOut,
    dependencies=[Depends(reads_from("listening", "tracks", "playlists", "reactions"))],
    summary="Your plays, newest first",
)
async def my_history(
    request: Request,
    container: ContainerDep,
    caller: CurrentCaller,
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response:
    """401 when not signed in; nobody else's plays are ever shown."""
    render = partial(_history, container, caller.user_id, cursor, limit)
    return await answer(request, container, caller.user_id, render)


def _history(
    container: Container, viewer: UUID, cursor: str | None, limit: int | None
) -> OrjsonResponse:
    page = container.queries.listening.history(
        viewer, cursor=cursor, limit=page_limit(limit, container)
    )
    track_ids = [p.target_id for p in page.items if p.target_kind == "track"]
    playlist_ids = [p.target_id for p in page.items if p.target_kind == "playlist"]
    tracks = tracks_json(
        container, list(container.queries.tracks.by_ids(track_ids, viewer).values()), viewer
    )
    playlist_rows = list(container.queries.playlists.visible_many(playlist_ids, viewer).values())
    playlists = {body["id"]: body for body in playlists_json(container, playlist_rows, viewer)}
    items: list[dict[str, Any]] = []
    for play in page.items:
        item: dict[str, Any] = {
            "id": play.id,
            "played_at": play.played_at,
            "source": play.source,
        }
        if play.target_kind == "track":
            item["track"] = tracks.get(play.target_id)
            item["track_id"] = play.target_id
            item["from_playlist_id"] = play.playlist_id
            item["unavailable"] = item["track"] is None
        else:
            item["playlist"] = playlists.get(play.target_id)
            item["playlist_id"] = play.target_id
            item["unavailable"] = item["playlist"] is None
        items.append(item)
    return OrjsonResponse({"items": items, "next_cursor": page.next_cursor})
