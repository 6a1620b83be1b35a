"""``/api/v1/playback``: a player reports what it does; the server decides what is a play.

A session counts as one play of its track once the reported playing intervals
add up to half the track or four minutes, whichever is less. Actions:
``pause``, ``resume``, ``seek`` (to ``to_ms``), ``stop``, and ``progress``
(the playhead while playing, so that an abrupt end is judged on what was
heard up to the last report). A session without a report for
``THEPLAYLIST_PLAYBACK_SESSION_TIMEOUT_SECONDS`` is over: reports to it are 409.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from application.plays import PlaybackState
from application.unit_of_work import Committed
from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1/playback", tags=["listening"], route_class=DirectRoute)

_MAX_MS = 7 * 24 * 3600 * 1000


class PlaybackStart(BaseModel):
    """The track to play, and the playlist it is played from, if any."""

    track_id: UUID
    playlist_id: UUID | None = None


class PlaybackEvent(BaseModel):
    """One thing the player did, at playhead ``position_ms``."""

    action: Literal["pause", "resume", "seek", "stop", "progress"]
    position_ms: int = Field(ge=0, le=_MAX_MS)
    to_ms: int | None = Field(None, ge=0, le=_MAX_MS)


class PlaybackOut(BaseModel):
    """A playback session as the server judges it."""

    id: UUID
    track_id: UUID
    playing: bool
    position_ms: int
    heard_ms: int
    threshold_ms: int
    counted: bool
    play_id: UUID | None
    ended: str | None


def _state(committed: Committed[PlaybackState], status_code: int) -> Response:
    state = committed.value
    body = PlaybackOut(
        id=state.id,
        track_id=state.track_id,
        playing=state.playing,
        position_ms=state.position_ms,
        heard_ms=state.heard_ms,
        threshold_ms=state.threshold_ms,
        counted=state.play_id is not None,
        play_id=state.play_id,
        ended=state.ended,
    )
    return committed_response(committed, status_code, body.model_dump(mode="json"))


@router.post("", status_code=201, response_model=PlaybackOut, summary="Start a playback session")
def start_playback(body: PlaybackStart, caller: CurrentCaller, app: AppDep) -> Response:
    """Playing from 0. With ``playlist_id``, the playlist must hold the track (422 otherwise)."""
    return _state(app.start_playback(caller.user_id, body.track_id, body.playlist_id), 201)


@router.post(
    "/{session_id}/events",
    response_model=PlaybackOut,
    summary="Report what the player did",
)
def report_playback(
    session_id: UUID, body: PlaybackEvent, caller: CurrentCaller, app: AppDep
) -> Response:
    """A ``seek`` needs ``to_ms``. Someone else's session is 404; an ended one is 409."""
    committed = app.report_playback(
        caller.user_id, session_id, body.action, body.position_ms, body.to_ms
    )
    return _state(committed, 200)
