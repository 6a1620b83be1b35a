"""``/api/v1/tracks``, ``/api/v1/tracks/{id}``, its stream and download, ``/api/v1/me/tracks``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from application.errors import NotFound
from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from interfaces.http.deps import ContainerDep
from interfaces.http.json import OrjsonResponse
from interfaces.http.queries.consistency import MIN_POSITION_HEADER, reads_from
from interfaces.http.queries.kept import answer
from interfaces.http.queries.params import Cursor, Limit, page_limit
from interfaces.http.queries.threads import in_query_thread
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller, OptionalCaller
from interfaces.http.streaming import (
    Delivery,
    audio_response,
    content_disposition,
    download_name,
)
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from projections.queries.tracks import TrackRow, TrackSort

router = APIRouter(prefix="/api/v1", tags=["tracks"], route_class=DirectRoute)

_READS = [Depends(reads_from("tracks", "reactions"))]


class CountsOut(BaseModel):
    """How many likes, dislikes, loves and plays."""

    likes: int
    dislikes: int
    loves: int
    plays: int


class MyReactionsOut(BaseModel):
    """The caller's own reactions (only when signed in)."""

    like: bool
    dislike: bool
    love: bool


class TrackOut(BaseModel):
    """A track."""

    id: UUID
    title: str
    artist: str | None
    album: str | None
    genre: str | None
    year: int | None
    duration_ms: int
    bitrate: int | None
    sample_rate: int | None
    channels: int | None
    mime_type: str
    size_bytes: int
    sha256: str
    uploader_id: UUID
    created_at: datetime
    updated_at: datetime
    counts: CountsOut
    my_reactions: MyReactionsOut | None = None
    stream_url: str
    download_url: str


class TrackPageOut(BaseModel):
    """A page of tracks and the cursor of the next one."""

    items: list[TrackOut]
    next_cursor: str | None


def track_json(row: TrackRow, mine: MyReactionsRow | None = None) -> dict[str, Any]:
    """The API.md shape of a track; ``my_reactions`` only when ``mine`` is given.

    UUIDs and datetimes stay objects: :class:`OrjsonResponse` writes them
    (as ``str()`` and ``isoformat()`` would, faster).
    """
    here = f"/api/v1/tracks/{row.id}"
    body: dict[str, Any] = {
        "id": row.id,
        "title": row.title,
        "artist": row.artist,
        "album": row.album,
        "genre": row.genre,
        "year": row.year,
        "duration_ms": row.duration_ms,
        "bitrate": row.bitrate,
        "sample_rate": row.sample_rate,
        "channels": row.channels,
        "mime_type": row.mime_type,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "uploader_id": row.uploader_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "counts": counts_json(row.counts),
        "stream_url": f"{here}/stream",
        "download_url": f"{here}/download",
    }
    if mine is not None:
        body["my_reactions"] = my_reactions_json(mine)
    return body


class Counted(Protocol):
    """Counts as tracks and playlists carry them."""

    @property
    def likes(self) -> int: ...
    @property
    def dislikes(self) -> int: ...
    @property
    def loves(self) -> int: ...
    @property
    def plays(self) -> int: ...


class Reactable(Protocol):
    """A read row of something users react to, perhaps with the viewer's reactions joined in."""

    @property
    def id(self) -> UUID: ...
    @property
    def mine(self) -> MyReactionsRow | None: ...


def counts_json(counts: Counted) -> dict[str, int]:
    """The ``counts`` object of a track or playlist."""
    return {
        "likes": counts.likes,
        "dislikes": counts.dislikes,
        "loves": counts.loves,
        "plays": counts.plays,
    }


def my_reactions_json(mine: MyReactionsRow) -> dict[str, bool]:
    """The ``my_reactions`` object of a track or playlist."""
    return {"like": mine.like, "dislike": mine.dislike, "love": mine.love}


def viewer_reactions(
    container: Container, rows: Iterable[Reactable], viewer_id: UUID
) -> dict[UUID, MyReactionsRow]:
    """The viewer's reactions to each row: those the query joined in, the rest looked up."""
    rows = list(rows)
    mine = {row.id: row.mine for row in rows if row.mine is not None}
    missing = [row.id for row in rows if row.mine is None]
    if missing:
        found = container.queries.reactions.mine(viewer_id, missing)
        mine.update((track_id, found.get(track_id, NO_REACTIONS)) for track_id in missing)
    return mine


def _tracks_json(
    container: Container, rows: list[TrackRow], caller_id: UUID | None
) -> list[dict[str, Any]]:
    if caller_id is None:
        return [track_json(row) for row in rows]
    mine = viewer_reactions(container, rows, caller_id)
    return [track_json(row, mine[row.id]) for row in rows]


Q = Annotated[str | None, Query(max_length=200, description="words in title, artist or album")]
Sort = Annotated[TrackSort, Query()]


def _page(
    container: Container,
    caller_id: UUID | None,
    *,
    q: str | None,
    uploader: UUID | None,
    sort: TrackSort,
    cursor: str | None,
    limit: int | None,
) -> OrjsonResponse:
    page = container.queries.tracks.list(
        q=q,
        uploader=uploader,
        sort=sort,
        cursor=cursor,
        limit=page_limit(limit, container),
        viewer_id=caller_id,
    )
    return OrjsonResponse(
        {"items": _tracks_json(container, page.items, caller_id), "next_cursor": page.next_cursor}
    )


@router.get(
    "/tracks", response_model=TrackPageOut, dependencies=_READS, summary="List and search tracks"
)
async def list_tracks(
    request: Request,
    container: ContainerDep,
    caller: OptionalCaller,
    q: Q = None,
    uploader: UUID | None = None,
    sort: Sort = "new",
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response:
    """Newest first by default; ``next_cursor`` fetches the next page."""
    caller_id = caller.user_id if caller is not None else None
    render = partial(
        _page, container, caller_id, q=q, uploader=uploader, sort=sort, cursor=cursor, limit=limit
    )
    return await answer(request, container, caller_id, render)


@router.get("/me/tracks", response_model=TrackPageOut, dependencies=_READS, summary="Your uploads")
async def my_tracks(
    request: Request,
    container: ContainerDep,
    caller: CurrentCaller,
    q: Q = None,
    sort: Sort = "new",
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response:
    """401 when not signed in."""
    render = partial(
        _page,
        container,
        caller.user_id,
        q=q,
        uploader=caller.user_id,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return await answer(request, container, caller.user_id, render)


async def _audio_track(request: Request, container: Container, track_id: UUID) -> TrackRow:
    """The live track whose audio is asked for: as read moments ago if it was
    (:mod:`projections.queries.recent`), unless the request asks for a position."""
    recent = container.recent_tracks
    asks_position = MIN_POSITION_HEADER in request.headers
    row = None if asks_position else recent.get(track_id)
    if row is None:
        row = await in_query_thread(container.queries.tracks.get, track_id)
        if row is None:
            raise NotFound("track not found")
        recent.remember(track_id, row)
    return row


@router.get("/tracks/{track_id}", response_model=TrackOut, dependencies=_READS, summary="A track")
async def get_track(
    request: Request, track_id: UUID, container: ContainerDep, caller: OptionalCaller
) -> Response:
    """404 for unknown and deleted tracks."""
    caller_id = caller.user_id if caller is not None else None
    return await answer(
        request, container, caller_id, partial(_one_track, container, track_id, caller_id)
    )


def _one_track(container: Container, track_id: UUID, caller_id: UUID | None) -> OrjsonResponse:
    row = container.queries.tracks.get(track_id, caller_id)
    if row is None:
        raise NotFound("track not found")
    return OrjsonResponse(_tracks_json(container, [row], caller_id)[0])


def _delivery(settings: Settings) -> Delivery:
    return Delivery(
        mode=settings.stream_delivery,
        accel_prefix=settings.stream_accel_prefix,
        presign_ttl_seconds=settings.s3_presign_ttl_seconds,
    )


_AUDIO: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"audio/*": {}},
        "description": "The audio (empty, with `X-Accel-Redirect`, for nginx to fill in "
        "when `THEPLAYLIST_STREAM_DELIVERY=x-accel-redirect`)",
    },
    206: {"description": "The requested range (`Content-Range`)"},
    304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
    307: {
        "description": "A presigned URL of the object in `Location` "
        "(`THEPLAYLIST_STREAM_DELIVERY=s3-presigned`)"
    },
    416: {"description": "`range_not_satisfiable`"},
    503: {"description": "`storage_unavailable` (with Retry-After)"},
}


@router.get(
    "/tracks/{track_id}/stream",
    response_class=Response,
    responses=_AUDIO,
    dependencies=[Depends(reads_from("tracks"))],
    summary="Stream a track (HTTP Range, ETag, conditional GET)",
)
@router.head(
    "/tracks/{track_id}/stream",
    response_class=Response,
    dependencies=[Depends(reads_from("tracks"))],
    include_in_schema=False,
)
async def stream_track(track_id: UUID, request: Request, container: ContainerDep) -> Response:
    """The audio; a single ``Range: bytes=...`` answers 206."""
    row = await _audio_track(request, container, track_id)
    return await audio_response(
        request,
        container.blobs,
        sha256=row.sha256,
        size=row.size_bytes,
        mime_type=row.mime_type,
        memory_threshold=container.settings.stream_memory_threshold_bytes,
        chunk_size=container.settings.stream_chunk_bytes,
        delivery=_delivery(container.settings),
    )


@router.get(
    "/tracks/{track_id}/download",
    response_class=Response,
    responses=_AUDIO,
    dependencies=[Depends(reads_from("tracks"))],
    summary="Download a track as a file named after it",
)
@router.head(
    "/tracks/{track_id}/download",
    response_class=Response,
    dependencies=[Depends(reads_from("tracks"))],
    include_in_schema=False,
)
async def download_track(track_id: UUID, request: Request, container: ContainerDep) -> Response:
    """The same bytes as the stream, as an attachment ``<artist> - <title>.<ext>``."""
    row = await _audio_track(request, container, track_id)
    name = download_name(row.title, row.artist, row.extension)
    return await audio_response(
        request,
        container.blobs,
        sha256=row.sha256,
        size=row.size_bytes,
        mime_type=row.mime_type,
        memory_threshold=container.settings.stream_memory_threshold_bytes,
        chunk_size=container.settings.stream_chunk_bytes,
        disposition=content_disposition("attachment", name),
        delivery=_delivery(container.settings),
    )
