"""Unique claims: one small aggregate per natural key (a username, an email...).

The aggregate id is derived from the normalised key with uuid5, so two commands
that race for the same key both try to write version 1 (or the same next
version) of the same aggregate: the event store lets exactly one of them in.
Uniqueness therefore comes from the store's own conflict detection, never from
a check-then-write race against a read model.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import AlreadyClaimed

_NAMESPACE = uuid5(NAMESPACE_URL, "https://theplaylist.invalid/claims")


class UniqueClaim(Aggregate):
    """Who, if anyone, holds the natural key ``kind:key`` right now."""

    class Claimed(Aggregate.Created):
        """The key was taken for the first time."""

        kind: str
        owner_id: UUID

    class ClaimedAgain(Aggregate.Event):
        """A released key was taken again."""

        owner_id: UUID

    class Released(Aggregate.Event):
        """The key was given up."""

    @staticmethod
    def id_for(kind: str, key: str) -> UUID:
        """The aggregate id for a normalised key of a kind (``username``, ``email``...).

        The key itself is never stored: for an email it is personal data, and the
        id is all the store needs to detect the race.
        """
        return uuid5(_NAMESPACE, f"{kind}:{key}")

    @classmethod
    def start(cls, kind: str, key: str, owner_id: UUID) -> UniqueClaim:
        """A new claim of ``key`` by ``owner_id``."""
        return cls._create(cls.Claimed, id=cls.id_for(kind, key), kind=kind, owner_id=owner_id)

    @event(Claimed)
    def __init__(self, kind: str, owner_id: UUID) -> None:
        self.kind = kind
        self.owner_id: UUID | None = owner_id

    @property
    def is_free(self) -> bool:
        """True when nobody holds the key."""
        return self.owner_id is None

    def claim(self, owner_id: UUID) -> None:
        """Take the key for ``owner_id``; a no-op if it already holds it."""
        if self.owner_id == owner_id:
            return
        if self.owner_id is not None:
            raise AlreadyClaimed(self.kind, self.owner_id)
        self._claimed_again(owner_id=owner_id)

    @event(ClaimedAgain)
    def _claimed_again(self, owner_id: UUID) -> None:
        self.owner_id = owner_id

    def release(self, owner_id: UUID) -> None:
        """Give the key up; only its holder can, and releasing a free key does nothing."""
        if self.owner_id != owner_id:
            return
        self._released()

    @event(Released)
    def _released(self) -> None:
        self.owner_id = None
