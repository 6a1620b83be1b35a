"""Commands on listening: record a play directly, or through a playback session.

A direct play is a new :class:`domain.plays.Play` aggregate: appending it reads
the target (to refuse deleted or hidden ones) but writes nothing that another
listener writes, so plays of one track never serialise. A playback session is
an aggregate of its own, written only by its listener's player; the play it
yields gets an id derived from the session, so it is recorded once even if two
reports race.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from application.context import Handlers
from application.errors import NotFound
from application.playlists import live_track, visible_playlist
from application.reactions import check_target
from application.unit_of_work import Committed, UnitOfWork
from domain.errors import InvalidValue, StateConflict
from domain.playback import PlaybackSession
from domain.plays import Play


@dataclass(frozen=True)
class PlaybackState:
    """A playback session as its player sees it after a report."""

    id: UUID
    track_id: UUID
    playing: bool
    position_ms: int
    heard_ms: int
    threshold_ms: int
    play_id: UUID | None
    ended: str | None

    @classmethod
    def of(cls, session: PlaybackSession) -> PlaybackState:
        """The state of a session aggregate."""
        return cls(
            session.id,
            session.track_id,
            session.playing,
            session.playhead_ms,
            session.heard_ms,
            session.threshold_ms,
            session.play_id,
            session.ended,
        )


class PlayCommands(Handlers):
    """Play and playback-session commands."""

    async def record_play(
        self, user_id: UUID, target_kind: str, target_id: UUID
    ) -> Committed[UUID]:
        """One play of a live track, or of a playlist the user may see; returns the play's id."""
        play_id = uuid4()
        now = self._clock.now()

        def decide(uow: UnitOfWork) -> UUID:
            check_target(uow, user_id, target_kind, target_id)
            uow.add(Play.record(play_id, user_id, target_kind, target_id, now))
            return play_id

        return await self._runner.run_async(decide, reads=(target_id,))

    def start_playback(
        self, user_id: UUID, track_id: UUID, playlist_id: UUID | None = None
    ) -> Committed[PlaybackState]:
        """A session playing the track from 0, maybe from a playlist that holds it."""
        session_id = uuid4()
        now = self._clock.now()
        timeout = self._rules.playback_timeout

        def decide(uow: UnitOfWork) -> PlaybackState:
            track = live_track(uow, track_id)
            if playlist_id is not None:
                playlist = visible_playlist(uow, playlist_id, user_id)
                if not playlist.holds_track(track_id):
                    raise InvalidValue("playlist_id", "this playlist does not hold the track")
            session = uow.add(
                PlaybackSession.start(
                    session_id,
                    user_id,
                    track_id,
                    playlist_id,
                    track.audio.duration_ms,
                    timeout,
                    now,
                )
            )
            return PlaybackState.of(session)

        return self._runner.run(decide)

    def report_playback(
        self,
        user_id: UUID,
        session_id: UUID,
        action: str,
        position_ms: int | None,
        to_ms: int | None = None,
    ) -> Committed[PlaybackState]:
        """Apply one player report; the report that reaches the threshold records the play.

        A report to a session past its timeout records the expiry and is refused
        with :class:`domain.errors.StateConflict`.
        """
        now = self._clock.now()

        def decide(uow: UnitOfWork) -> PlaybackState | None:
            session = uow.find(PlaybackSession, session_id)
            if session is None or session.user_id != user_id:
                raise NotFound("playback session not found")
            if session.expire_if_due(now):
                return None
            play_id = Play.id_for_session(session.id)
            if session.report(action, position_ms, to_ms, now, play_id):
                uow.add(
                    Play.record(
                        play_id,
                        user_id,
                        "track",
                        session.track_id,
                        now,
                        playlist_id=session.playlist_id,
                        session_id=session.id,
                    )
                )
            return PlaybackState.of(session)

        committed = self._runner.run(decide)
        if committed.value is None:
            # The expiry is saved; the report itself is refused.
            raise StateConflict("this playback session has expired; start a new one")
        return Committed(committed.value, committed.position)
