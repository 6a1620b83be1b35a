"""Commands on reactions: set or clear a like, dislike or love on a track or a playlist.

Both are idempotent: setting a reaction that is set, or clearing one that is
not, appends nothing. The target must exist, be live, and be visible to the
user (a private playlist of someone else does not exist for them).

They are coroutines, like a direct play: they are the commands the service
takes most often, and it awaits their group commit on its event loop instead
of parking a thread per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.context import Handlers
from application.playlists import live_track, visible_playlist
from application.unit_of_work import Committed, UnitOfWork
from domain.errors import InvalidValue
from domain.reactions import TARGET_KINDS, Reaction, check_kind


@dataclass(frozen=True)
class MyReactions:
    """The user's reactions to one target, after the command."""

    target_id: UUID
    like: bool
    dislike: bool
    love: bool

    @classmethod
    def of(cls, target_id: UUID, kinds: set[str] | frozenset[str]) -> MyReactions:
        """From a set of reaction kinds."""
        return cls(target_id, "like" in kinds, "dislike" in kinds, "love" in kinds)


def check_target(uow: UnitOfWork, user_id: UUID, target_kind: str, target_id: UUID) -> None:
    """:class:`NotFound` unless the target exists, is live and is visible to the user."""
    if target_kind == "track":
        live_track(uow, target_id)
    elif target_kind == "playlist":
        visible_playlist(uow, target_id, user_id)
    else:
        raise InvalidValue("target", f"must be one of {', '.join(TARGET_KINDS)}")


class ReactionCommands(Handlers):
    """Reaction commands; one small aggregate per (user, target), so nobody contends."""

    async def set_reaction(
        self, user_id: UUID, target_kind: str, target_id: UUID, kind: str
    ) -> Committed[MyReactions]:
        """Set the user's ``kind`` reaction (setting like clears dislike, and back)."""
        check_kind(kind)
        now = self._clock.now()
        reaction_id = Reaction.id_for(user_id, target_id)

        def decide(uow: UnitOfWork) -> MyReactions:
            check_target(uow, user_id, target_kind, target_id)
            reaction = uow.find(Reaction, reaction_id)
            if reaction is None:
                reaction = uow.add(Reaction.open(user_id, target_kind, target_id))
            reaction.set(kind, now)
            return MyReactions.of(target_id, reaction.kinds)

        return await self._runner.run_async(decide, (target_id, reaction_id))

    async def clear_reaction(
        self, user_id: UUID, target_kind: str, target_id: UUID, kind: str
    ) -> Committed[MyReactions]:
        """Clear the user's ``kind`` reaction, if set."""
        check_kind(kind)
        now = self._clock.now()
        reaction_id = Reaction.id_for(user_id, target_id)

        def decide(uow: UnitOfWork) -> MyReactions:
            check_target(uow, user_id, target_kind, target_id)
            reaction = uow.find(Reaction, reaction_id)
            if reaction is None:
                return MyReactions.of(target_id, frozenset())
            reaction.clear(kind, now)
            return MyReactions.of(target_id, reaction.kinds)

        return await self._runner.run_async(decide, (target_id, reaction_id))
