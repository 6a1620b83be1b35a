"""``PUT``/``DELETE /api/v1/{tracks,playlists}/{id}/reactions/{like,dislike,love}``.

Idempotent: setting a set reaction or clearing an unset one changes nothing
and appends nothing. Like and dislike exclude each other.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel

from application.reactions import MyReactions
from application.unit_of_work import Committed
from interfaces.http.commands.responses import committed_response
from interfaces.http.deps import AppDep
from interfaces.http.routing import DirectRoute
from interfaces.http.security import CurrentCaller

router = APIRouter(prefix="/api/v1", tags=["reactions"], route_class=DirectRoute)

ReactionKind = Literal["like", "dislike", "love"]


class MyReactionsOut(BaseModel):
    """The caller's reactions to one target."""

    like: bool
    dislike: bool
    love: bool


class ReactionResult(BaseModel):
    """The target, and the caller's reactions to it after the command."""

    id: UUID
    my_reactions: MyReactionsOut


def _result(committed: Committed[MyReactions]) -> Response:
    mine = committed.value
    body = ReactionResult(
        id=mine.target_id,
        my_reactions=MyReactionsOut(like=mine.like, dislike=mine.dislike, love=mine.love),
    )
    return committed_response(committed, 200, body.model_dump())


@router.put(
    "/tracks/{track_id}/reactions/{kind}",
    response_model=ReactionResult,
    summary="Set your reaction to a track",
)
async def set_track_reaction(
    track_id: UUID, kind: ReactionKind, caller: CurrentCaller, app: AppDep
) -> Response:
    """404 for a deleted or unknown track."""
    return _result(await app.set_reaction(caller.user_id, "track", track_id, kind))


@router.delete(
    "/tracks/{track_id}/reactions/{kind}",
    response_model=ReactionResult,
    summary="Clear your reaction to a track",
)
async def clear_track_reaction(
    track_id: UUID, kind: ReactionKind, caller: CurrentCaller, app: AppDep
) -> Response:
    """404 for a deleted or unknown track."""
    return _result(await app.clear_reaction(caller.user_id, "track", track_id, kind))


@router.put(
    "/playlists/{playlist_id}/reactions/{kind}",
    response_model=ReactionResult,
    summary="Set your reaction to a playlist",
)
async def set_playlist_reaction(
    playlist_id: UUID, kind: ReactionKind, caller: CurrentCaller, app: AppDep
) -> Response:
    """404 for a deleted, unknown or (someone else's) private playlist."""
    return _result(await app.set_reaction(caller.user_id, "playlist", playlist_id, kind))


@router.delete(
    "/playlists/{playlist_id}/reactions/{kind}",
    response_model=ReactionResult,
    summary="Clear your reaction to a playlist",
)
async def clear_playlist_reaction(
    playlist_id: UUID, kind: ReactionKind, caller: CurrentCaller, app: AppDep
) -> Response:
    """404 for a deleted, unknown or (someone else's) private playlist."""
    return _result(await app.clear_reaction(caller.user_id, "playlist", playlist_id, kind))
