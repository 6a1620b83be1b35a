"""Reactions: what one user thinks of one track or playlist (like, dislike, love).

There is one small aggregate per (user, target), its id derived from the pair
with uuid5. Thousands of people reacting to the same track therefore write to
thousands of different aggregates and never contend; a user racing with
themself (two tabs) contends on their own aggregate only, and the loser
replays on fresh state. The counts live in the read models, which add up the
events with set-based SQL.

Every change event carries the user, the target and the time, so a projector
can count it without looking anything up.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValue

KINDS = ("like", "dislike", "love")
TARGET_KINDS = ("track", "playlist")

# Like and dislike exclude each other; love goes with either.
_EXCLUDES = {"like": "dislike", "dislike": "like"}

_NAMESPACE = uuid5(NAMESPACE_URL, "https://theplaylist.invalid/reactions")


def check_kind(kind: str) -> str:
    """The reaction kind, if it is one."""
    if kind not in KINDS:
        raise InvalidValue("reaction", f"must be one of {', '.join(KINDS)}")
    return kind


class Reaction(Aggregate):
    """The reactions of one user to one target."""

    class Opened(Aggregate.Created):
        """The user reacted to this target for the first time (a ``Set`` follows)."""

        user_id: UUID
        target_kind: str
        target_id: UUID

    class Set(Aggregate.Event):
        """The user set a reaction; ``replaced`` is the one it displaced, if any."""

        user_id: UUID
        target_kind: str
        target_id: UUID
        kind: str
        replaced: str | None
        at: datetime

    class Cleared(Aggregate.Event):
        """The user took a reaction back."""

        user_id: UUID
        target_kind: str
        target_id: UUID
        kind: str
        at: datetime

    @staticmethod
    def id_for(user_id: UUID, target_id: UUID) -> UUID:
        """The aggregate id of the user's reactions to the target."""
        return uuid5(_NAMESPACE, f"{user_id}:{target_id}")

    @classmethod
    def open(cls, user_id: UUID, target_kind: str, target_id: UUID) -> Reaction:
        """The user's (still empty) reactions to the target."""
        if target_kind not in TARGET_KINDS:
            raise InvalidValue("target", f"must be one of {', '.join(TARGET_KINDS)}")
        return cls._create(
            cls.Opened,
            id=cls.id_for(user_id, target_id),
            user_id=user_id,
            target_kind=target_kind,
            target_id=target_id,
        )

    @event(Opened)
    def __init__(self, user_id: UUID, target_kind: str, target_id: UUID) -> None:
        self.user_id = user_id
        self.target_kind = target_kind
        self.target_id = target_id
        self.kinds: set[str] = set()

    def set(self, kind: str, at: datetime) -> bool:
        """Set a reaction; True if that changed anything (setting a set one records nothing)."""
        check_kind(kind)
        if kind in self.kinds:
            return False
        excluded = _EXCLUDES.get(kind)
        self._set(
            user_id=self.user_id,
            target_kind=self.target_kind,
            target_id=self.target_id,
            kind=kind,
            replaced=excluded if excluded in self.kinds else None,
            at=at,
        )
        return True

    @event(Set)
    def _set(
        self,
        user_id: UUID,
        target_kind: str,
        target_id: UUID,
        kind: str,
        replaced: str | None,
        at: datetime,
    ) -> None:
        self.kinds.add(kind)
        if replaced is not None:
            self.kinds.discard(replaced)

    def clear(self, kind: str, at: datetime) -> bool:
        """Clear a reaction; True if that changed anything (clearing an unset one: nothing)."""
        check_kind(kind)
        if kind not in self.kinds:
            return False
        self._cleared(
            user_id=self.user_id,
            target_kind=self.target_kind,
            target_id=self.target_id,
            kind=kind,
            at=at,
        )
        return True

    @event(Cleared)
    def _cleared(
        self, user_id: UUID, target_kind: str, target_id: UUID, kind: str, at: datetime
    ) -> None:
        self.kinds.discard(kind)
