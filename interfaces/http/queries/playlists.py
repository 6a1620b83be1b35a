"""``/api/v1/playlists``, ``/api/v1/playlists/{id}`` (and its exports), ``/api/v1/me/playlists``.

A private playlist is 404 to everyone but its owner, here and in every list.
A playlist's ``version`` is also its ``ETag``: send it back as ``If-Match`` to
make a change conditional.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from application.errors import NotFound
from infrastructure.bootstrap import Container
from interfaces.http.deps import ContainerDep
from interfaces.http.json import OrjsonResponse
from interfaces.http.queries.consistency import reads_from
from interfaces.http.queries.kept import answer
from interfaces.http.queries.params import Cursor, Limit, page_limit
from interfaces.http.queries.playlist_formats import (
    M3U_MEDIA_TYPE,
    XSPF_MEDIA_TYPE,
    ExportPlaylist,
    ExportTrack,
    m3u8,
    xspf,
)
from interfaces.http.queries.tracks import (
    CountsOut,
    MyReactionsOut,
    TrackOut,
    counts_json,
    my_reactions_json,
    track_json,
    viewer_reactions,
)
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller, OptionalCaller
from interfaces.http.streaming import content_disposition, download_name
from projections.queries.playlists import PlaylistRow, PlaylistSort
from projections.queries.reactions import MyReactionsRow
from projections.queries.tracks import TrackRow

router = APIRouter(prefix="/api/v1", tags=["playlists"], route_class=DirectRoute)

_LIST_READS = [Depends(reads_from("playlists", "reactions"))]
_DETAIL_READS = [Depends(reads_from("playlists", "tracks", "reactions"))]


class OwnerOut(BaseModel):
    """Who owns a playlist."""

    id: UUID
    username: str | None


class PlaylistOut(BaseModel):
    """A playlist as listed."""

    id: UUID
    name: str
    description: str
    visibility: str
    owner_id: UUID
    owner: OwnerOut
    version: int
    entry_count: int
    created_at: datetime
    updated_at: datetime
    counts: CountsOut
    my_reactions: MyReactionsOut | None = None


class EntryOut(BaseModel):
    """One entry; ``track`` is null (and ``unavailable`` true) once its track was deleted."""

    entry_id: UUID
    position: int
    track_id: UUID
    unavailable: bool
    added_at: datetime
    track: TrackOut | None


class PlaylistDetailOut(PlaylistOut):
    """A playlist with its entries in order."""

    entries: list[EntryOut]


class PlaylistPageOut(BaseModel):
    """A page of playlists and the cursor of the next one."""

    items: list[PlaylistOut]
    next_cursor: str | None


def playlist_json(row: PlaylistRow, mine: MyReactionsRow | None = None) -> dict[str, Any]:
    """The API shape of a playlist (without entries); ``my_reactions`` only when given.

    UUIDs and datetimes stay objects, for :class:`OrjsonResponse` to write.
    """
    body: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "visibility": row.visibility,
        "owner_id": row.owner_id,
        "owner": {"id": row.owner_id, "username": row.owner_username},
        "version": row.version,
        "entry_count": row.entry_count,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "counts": counts_json(row.counts),
    }
    if mine is not None:
        body["my_reactions"] = my_reactions_json(mine)
    return body


def playlists_json(
    container: Container, rows: list[PlaylistRow], viewer_id: UUID | None
) -> list[dict[str, Any]]:
    """Several playlists, with the viewer's reactions when signed in."""
    if viewer_id is None:
        return [playlist_json(row) for row in rows]
    mine = viewer_reactions(container, rows, viewer_id)
    return [playlist_json(row, mine[row.id]) for row in rows]


def tracks_json(
    container: Container, rows: list[TrackRow], viewer_id: UUID | None
) -> dict[UUID, dict[str, Any]]:
    """Several tracks by id, with the viewer's reactions when signed in."""
    if viewer_id is None:
        return {row.id: track_json(row) for row in rows}
    mine = viewer_reactions(container, rows, viewer_id)
    return {row.id: track_json(row, mine[row.id]) for row in rows}


def _viewer(caller: OptionalCaller) -> UUID | None:
    return caller.user_id if caller is not None else None


def _visible(container: Container, playlist_id: UUID, viewer_id: UUID | None) -> PlaylistRow:
    row = container.queries.playlists.visible(playlist_id, viewer_id)
    if row is None:
        raise NotFound("playlist not found")
    return row


Q = Annotated[str | None, Query(max_length=200, description="text in the name or description")]
Sort = Annotated[PlaylistSort, Query()]


@router.get(
    "/playlists",
    response_model=PlaylistPageOut,
    dependencies=_LIST_READS,
    summary="List and search public playlists",
)
async def list_playlists(
    request: Request,
    container: ContainerDep,
    caller: OptionalCaller,
    q: Q = None,
    owner: UUID | None = None,
    sort: Sort = "new",
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response:
    """Public playlists only (a private one is listed to nobody, its owner included)."""

    def render() -> OrjsonResponse:
        page = container.queries.playlists.listed(
            q=q, owner_id=owner, sort=sort, cursor=cursor, limit=page_limit(limit, container)
        )
        items = playlists_json(container, page.items, _viewer(caller))
        return OrjsonResponse({"items": items, "next_cursor": page.next_cursor})

    return await answer(request, container, _viewer(caller), render)


@router.get(
    "/me/playlists",
    response_model=PlaylistPageOut,
    dependencies=_LIST_READS,
    summary="Your playlists, private ones included",
)
async def my_playlists(
    request: Request,
    container: ContainerDep,
    caller: CurrentCaller,
    q: Q = None,
    sort: Sort = "new",
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response:
    """401 when not signed in."""

    def render() -> OrjsonResponse:
        page = container.queries.playlists.owned_by(
            caller.user_id, q=q, sort=sort, cursor=cursor, limit=page_limit(limit, container)
        )
        items = playlists_json(container, page.items, caller.user_id)
        return OrjsonResponse({"items": items, "next_cursor": page.next_cursor})

    return await answer(request, container, caller.user_id, render)


@router.get(
    "/playlists/{playlist_id}",
    response_model=PlaylistDetailOut,
    dependencies=_DETAIL_READS,
    responses={404: {"description": "Unknown, deleted, or someone else's private playlist"}},
    summary="A playlist with its entries",
)
async def get_playlist(
    request: Request, playlist_id: UUID, container: ContainerDep, caller: OptionalCaller
) -> Response:
    """Entries in order, each with its track (null once deleted); ETag is the version."""
    viewer = _viewer(caller)
    return await answer(
        request, container, viewer, partial(_detail, container, playlist_id, viewer)
    )


def _detail(container: Container, playlist_id: UUID, viewer: UUID | None) -> Response:
    row = _visible(container, playlist_id, viewer)
    entries = container.queries.playlists.entries_with_tracks(playlist_id, viewer)
    tracks = tracks_json(container, [track for _, track in entries if track is not None], viewer)
    body = playlists_json(container, [row], viewer)[0]
    body["entries"] = [
        {
            "entry_id": entry.entry_id,
            "position": entry.position,
            "track_id": entry.track_id,
            "unavailable": entry.unavailable or entry.track_id not in tracks,
            "added_at": entry.added_at,
            "track": None if entry.unavailable else tracks.get(entry.track_id),
        }
        for entry, _ in entries
    ]
    return OrjsonResponse(body, headers={"ETag": f'"{row.version}"', "Cache-Control": "no-cache"})


def _export(
    request: Request, container: ContainerDep, caller: OptionalCaller, playlist_id: UUID
) -> tuple[PlaylistRow, ExportPlaylist, list[ExportTrack]]:
    row = _visible(container, playlist_id, _viewer(caller))
    entries = container.queries.playlists.entries(playlist_id)
    tracks = container.queries.tracks.by_ids(e.track_id for e in entries)
    base = str(request.base_url).rstrip("/")
    playable = [
        ExportTrack(
            url=f"{base}/api/v1/tracks/{track.id}/stream",
            identifier=f"urn:uuid:{track.id}",
            title=track.title,
            artist=track.artist,
            album=track.album,
            duration_ms=track.duration_ms,
        )
        for entry in entries
        if not entry.unavailable and (track := tracks.get(entry.track_id)) is not None
    ]
    labels = ExportPlaylist(
        name=row.name,
        creator=row.owner_username,
        description=row.description,
        location=str(request.url),
        updated_at=row.updated_at,
    )
    return row, labels, playable


def _file_headers(row: PlaylistRow, extension: str) -> dict[str, str]:
    name = download_name(row.name, None, extension)
    # Private playlists must not be kept by shared caches.
    cache = "private, no-cache" if row.visibility == "private" else "no-cache"
    return {"Content-Disposition": content_disposition("inline", name), "Cache-Control": cache}


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown, deleted, or someone else's private playlist"}
}


@router.get(
    "/playlists/{playlist_id}/export.m3u",
    response_class=Response,
    dependencies=_DETAIL_READS,
    responses={200: {"content": {"audio/x-mpegurl": {}}}, **_EXPORT_RESPONSES},
    summary="The playlist as M3U8",
)
def export_m3u(
    playlist_id: UUID, request: Request, container: ContainerDep, caller: OptionalCaller
) -> Response:
    """Extended M3U in UTF-8; entries of deleted tracks are left out."""
    row, labels, playable = _export(request, container, caller, playlist_id)
    return Response(
        m3u8(labels, playable).encode(),
        media_type=M3U_MEDIA_TYPE,
        headers=_file_headers(row, "m3u8"),
    )


@router.get(
    "/playlists/{playlist_id}/export.xspf",
    response_class=Response,
    dependencies=_DETAIL_READS,
    responses={200: {"content": {"application/xspf+xml": {}}}, **_EXPORT_RESPONSES},
    summary="The playlist as XSPF",
)
def export_xspf(
    playlist_id: UUID, request: Request, container: ContainerDep, caller: OptionalCaller
) -> Response:
    """XSPF version 1 (namespace http://xspf.org/ns/0/); entries of deleted tracks are left out."""
    row, labels, playable = _export(request, container, caller, playlist_id)
    return Response(
        xspf(labels, playable), media_type=XSPF_MEDIA_TYPE, headers=_file_headers(row, "xspf")
    )
