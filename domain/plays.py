"""Plays: one listen of a track, or of a playlist, by one user.

Each play is an aggregate of its own with a single event. Appending a play
therefore never touches an existing aggregate: ten thousand people playing the
same track at once write ten thousand new streams, with no version to fight
over and nothing to retry. The counts are sums the read models keep.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValue
from domain.reactions import TARGET_KINDS

_NAMESPACE = uuid5(NAMESPACE_URL, "https://theplaylist.invalid/plays")


class Play(Aggregate):
    """A recorded play. ``source`` says who decided it: the client, or a playback session."""

    class Recorded(Aggregate.Created):
        """Someone played a track or a playlist."""

        user_id: UUID
        target_kind: str
        target_id: UUID
        played_at: datetime
        source: str
        playlist_id: UUID | None
        session_id: UUID | None

    @staticmethod
    def id_for_session(session_id: UUID) -> UUID:
        """The id of the one play a playback session may yield.

        Derived from the session, so even two racing reports of one session
        cannot record two plays: both would create version 1 of the same stream.
        """
        return uuid5(_NAMESPACE, str(session_id))

    @classmethod
    def record(
        cls,
        play_id: UUID,
        user_id: UUID,
        target_kind: str,
        target_id: UUID,
        played_at: datetime,
        *,
        playlist_id: UUID | None = None,
        session_id: UUID | None = None,
    ) -> Play:
        """A new play. ``playlist_id`` is the playlist a track was played from, if any."""
        if target_kind not in TARGET_KINDS:
            raise InvalidValue("target", f"must be one of {', '.join(TARGET_KINDS)}")
        return cls._create(
            cls.Recorded,
            id=play_id,
            user_id=user_id,
            target_kind=target_kind,
            target_id=target_id,
            played_at=played_at,
            source="session" if session_id is not None else "direct",
            playlist_id=playlist_id,
            session_id=session_id,
        )

    @event(Recorded)
    def __init__(
        self,
        user_id: UUID,
        target_kind: str,
        target_id: UUID,
        played_at: datetime,
        source: str,
        playlist_id: UUID | None,
        session_id: UUID | None,
    ) -> None:
        self.user_id = user_id
        self.target_kind = target_kind
        self.target_id = target_id
        self.played_at = played_at
        self.source = source
        self.playlist_id = playlist_id
        self.session_id = session_id
