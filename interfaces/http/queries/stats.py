"""``/api/v1/stats``: top tracks and playlists over rolling windows, plays per bucket.

Periods are windows ending now: ``day`` is the last 24 hours, ``week`` the
last 7 days, ``month`` the last 30 days, ``year`` the last 365 days, ``all``
everything. Reaction counts are net over the window (set minus taken back).
Buckets are UTC hours, days or months.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, select

from application.errors import NotFound
from infrastructure.bootstrap import Container
from interfaces.http.deps import ContainerDep
from interfaces.http.json import OrjsonResponse
from interfaces.http.queries.consistency import MIN_POSITION_HEADER, reads_from
from interfaces.http.queries.kept import answer
from interfaces.http.queries.params import Instant, Limit, page_limit
from interfaces.http.queries.playlists import PlaylistOut, playlists_json, tracks_json
from interfaces.http.queries.tracks import TrackOut
from interfaces.http.routing import DirectRoute
from interfaces.http.security import OptionalCaller
from projections.queries.listening import PERIODS, Bucket, Period, RankBy, Ranked
from projections.queries.playlists import visible_to
from projections.schema import playlists, tracks

router = APIRouter(prefix="/api/v1/stats", tags=["analytics"], route_class=DirectRoute)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A top list's window ends now: its answer is kept this long at most, changes or not.
WINDOW_MOVES_SECONDS = 30.0
_DEFAULT_SPAN = timedelta(days=30)


class RankedTrackOut(BaseModel):
    """A track and its count over the period."""

    track: TrackOut
    count: int


class RankedPlaylistOut(BaseModel):
    """A playlist and its count over the period."""

    playlist: PlaylistOut
    count: int


class TopTracksOut(BaseModel):
    """The top tracks, highest count first."""

    period: str
    by: str
    items: list[RankedTrackOut]


class TopPlaylistsOut(BaseModel):
    """The top playlists, highest count first."""

    period: str
    by: str
    items: list[RankedPlaylistOut]


class BucketOut(BaseModel):
    """Plays in the bucket starting at ``start``."""

    start: datetime
    count: int


class PlaysOverTimeOut(BaseModel):
    """Plays of one track per bucket between ``from`` and ``to``, zeros included."""

    track_id: UUID
    bucket: str
    from_: datetime = Field(alias="from")
    to: datetime
    total: int
    items: list[BucketOut]


_LIVE_TRACKS = select(tracks.c.id)
_PUBLIC = select(playlists.c.id).where(visible_to())

PeriodQuery = Annotated[Period, Query(description="a rolling window ending now")]
ByQuery = Annotated[RankBy, Query(description="what to rank by")]


def _ranking(
    request: Request,
    container: Container,
    target_kind: str,
    by: RankBy,
    period: Period,
    limit: int,
    eligible: Select[Any],
) -> tuple[list[Ranked], float]:
    """The top of the period: as ranked moments ago if it was
    (:mod:`projections.queries.recent`), unless the request asks for a position.

    Also how long an answer made from it may be kept
    (:func:`interfaces.http.queries.kept.answer`): what the ranking has left
    when the read models changed since it was made, else
    :data:`WINDOW_MOVES_SECONDS`. Only the ranking is kept; what is shown of
    each target is read afresh.
    """
    key = (target_kind, by, period, limit)
    recent = container.recent_rankings
    # Read before the ranking: a change committed meanwhile leaves it an older stamp.
    stamp = container.answers.changes.current() if container.answers is not None else None
    found = None if MIN_POSITION_HEADER in request.headers else recent.get_with_time_left(key)
    if found is not None:
        (made_at, ranked), left = found
        exact = stamp is not None and made_at == stamp
        return ranked, WINDOW_MOVES_SECONDS if exact else min(left, WINDOW_MOVES_SECONDS)
    now = container.clock.now()
    start = _EPOCH if period == "all" else now - PERIODS[period]
    ranked = container.queries.listening.top(target_kind, by, start, now, limit, eligible)
    recent.remember(key, (stamp, ranked))
    return ranked, WINDOW_MOVES_SECONDS


@router.get(
    "/top-tracks",
    response_model=TopTracksOut,
    dependencies=[Depends(reads_from("listening", "tracks", "reactions"))],
    summary="The most played, liked or loved tracks over a period",
)
async def top_tracks(
    request: Request,
    container: ContainerDep,
    caller: OptionalCaller,
    period: PeriodQuery = "week",
    by: ByQuery = "plays",
    limit: Limit = None,
) -> Response:
    """Live tracks only; ties are broken by id."""

    left = WINDOW_MOVES_SECONDS

    def render() -> OrjsonResponse:
        nonlocal left
        ranked, left = _ranking(
            request, container, "track", by, period, page_limit(limit, container), _LIVE_TRACKS
        )
        viewer = caller.user_id if caller is not None else None
        rows = container.queries.tracks.by_ids((r.target_id for r in ranked), viewer)
        bodies = tracks_json(container, list(rows.values()), viewer)
        items = [
            {"track": bodies[r.target_id], "count": r.count}
            for r in ranked
            if r.target_id in bodies
        ]
        return OrjsonResponse({"period": period, "by": by, "items": items})

    viewer = caller.user_id if caller else None
    return await answer(request, container, viewer, render, lifetime=lambda: left)


@router.get(
    "/top-playlists",
    response_model=TopPlaylistsOut,
    dependencies=[Depends(reads_from("listening", "playlists", "reactions"))],
    summary="The most played, liked or loved public playlists over a period",
)
async def top_playlists(
    request: Request,
    container: ContainerDep,
    caller: OptionalCaller,
    period: PeriodQuery = "week",
    by: ByQuery = "plays",
    limit: Limit = None,
) -> Response:
    """Public, live playlists only; ties are broken by id."""

    left = WINDOW_MOVES_SECONDS

    def render() -> OrjsonResponse:
        nonlocal left
        ranked, left = _ranking(
            request, container, "playlist", by, period, page_limit(limit, container), _PUBLIC
        )
        viewer = caller.user_id if caller is not None else None
        rows = container.queries.playlists.visible_many((r.target_id for r in ranked), None)
        bodies = {
            body["id"]: body for body in playlists_json(container, list(rows.values()), viewer)
        }
        items: list[dict[str, Any]] = [
            {"playlist": bodies[r.target_id], "count": r.count}
            for r in ranked
            if r.target_id in bodies
        ]
        return OrjsonResponse({"period": period, "by": by, "items": items})

    viewer = caller.user_id if caller else None
    return await answer(request, container, viewer, render, lifetime=lambda: left)


@router.get(
    "/tracks/{track_id}/plays",
    response_model=PlaysOverTimeOut,
    dependencies=[Depends(reads_from("listening", "tracks"))],
    summary="Plays of a track per hour, day or month",
)
def track_plays(
    track_id: UUID,
    container: ContainerDep,
    bucket: Bucket = "day",
    from_: Annotated[Instant | None, Query(alias="from")] = None,
    to: Instant | None = None,
) -> OrjsonResponse:
    """Between ``from`` and ``to`` (default: the last 30 days); times without a zone are UTC."""
    if container.queries.tracks.get(track_id) is None:
        raise NotFound("track not found")
    # Both are UTC already, and bounded well inside what a bucket's arithmetic can hold.
    end = to if to is not None else container.clock.now()
    start = from_ if from_ is not None else end - _DEFAULT_SPAN
    counts = container.queries.listening.plays_per_bucket(
        "track", track_id, bucket, start, end, container.settings.stats_max_buckets
    )
    return OrjsonResponse(
        {
            "track_id": track_id,
            "bucket": bucket,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "total": sum(b.count for b in counts),
            "items": [{"start": b.start.isoformat(), "count": b.count} for b in counts],
        }
    )
