"""Playback sessions: what a player reports while it plays one track.

The heard time is the sum of the *playing* intervals, each measured by the
playhead positions the player reports: from the position where playing
started (the start, a resume, the target of a seek, the last progress
report) to the position of the next report. Seeks jump without adding
anything; paused time adds nothing. The server trusts the positions.

A session yields exactly one play, at the report that proves the listener has
heard the threshold: half the track or four minutes, whichever is less. The
play is recorded then, not at stop, so a session abandoned afterwards has
already counted; one abandoned before never will, since a playing interval that
no report closed proves nothing (players that want to be judged fairly on an
abrupt end send ``progress`` reports while playing).

A session without a report for its timeout is over. Expiry is evaluated
lazily: the next report to such a session records ``Expired`` (at the moment
the timeout ran out, with the heard time the session ended with) and is
refused. Nothing has to sweep abandoned sessions, because nothing about them
changes when they expire: their verdict was reached by their last report.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValue, StateConflict

ACTIONS = ("pause", "resume", "seek", "progress", "stop")

# The contract's rule: half the track, or four minutes, whichever is less.
MAX_THRESHOLD_MS = 4 * 60 * 1000


def threshold_for(duration_ms: int) -> int:
    """The heard time (ms) that makes a play of a track this long."""
    half = (duration_ms + 1) // 2  # rounded up: heard >= half <=> 2 * heard >= duration
    return max(1, min(half, MAX_THRESHOLD_MS))


class PlaybackSession(Aggregate):
    """One listener playing one track (maybe from a playlist), as reported by the player."""

    class Started(Aggregate.Created):
        """Playback started at position 0."""

        user_id: UUID
        track_id: UUID
        playlist_id: UUID | None
        duration_ms: int
        threshold_ms: int
        timeout_seconds: int
        started_at: datetime

    class Paused(Aggregate.Event):
        """The player paused at ``position_ms``; ``heard_ms`` is the total so far."""

        position_ms: int
        heard_ms: int
        at: datetime

    class Resumed(Aggregate.Event):
        """The player resumed playing from ``position_ms``."""

        position_ms: int
        at: datetime

    class Progressed(Aggregate.Event):
        """The player, still playing, reported its playhead."""

        position_ms: int
        heard_ms: int
        at: datetime

    class Seeked(Aggregate.Event):
        """The playhead jumped from ``position_ms`` to ``to_ms`` (the jump is not heard)."""

        position_ms: int
        to_ms: int
        heard_ms: int
        at: datetime

    class Stopped(Aggregate.Event):
        """The player stopped at ``position_ms``; the session is over."""

        position_ms: int
        heard_ms: int
        at: datetime

    class PlayCounted(Aggregate.Event):
        """The heard time reached the threshold: the session yielded its play."""

        play_id: UUID
        heard_ms: int
        at: datetime

    class Expired(Aggregate.Event):
        """No report came for the timeout; the session ended at ``at`` as it was."""

        heard_ms: int
        at: datetime

    @classmethod
    def start(
        cls,
        session_id: UUID,
        user_id: UUID,
        track_id: UUID,
        playlist_id: UUID | None,
        duration_ms: int,
        timeout: timedelta,
        now: datetime,
    ) -> PlaybackSession:
        """A session playing the track from 0."""
        if duration_ms <= 0:
            raise InvalidValue("track_id", "the track has no duration")
        return cls._create(
            cls.Started,
            id=session_id,
            user_id=user_id,
            track_id=track_id,
            playlist_id=playlist_id,
            duration_ms=duration_ms,
            threshold_ms=threshold_for(duration_ms),
            timeout_seconds=max(1, int(timeout.total_seconds())),
            started_at=now,
        )

    @event(Started)
    def __init__(
        self,
        user_id: UUID,
        track_id: UUID,
        playlist_id: UUID | None,
        duration_ms: int,
        threshold_ms: int,
        timeout_seconds: int,
        started_at: datetime,
    ) -> None:
        self.user_id = user_id
        self.track_id = track_id
        self.playlist_id = playlist_id
        self.duration_ms = duration_ms
        self.threshold_ms = threshold_ms
        self.timeout = timedelta(seconds=timeout_seconds)
        self.playing = True
        self.anchor_ms = 0  # where the current playing interval began
        self.playhead_ms = 0
        self.heard_ms = 0
        self.last_report_at = started_at
        self.play_id: UUID | None = None
        self.ended: str | None = None

    @property
    def counted(self) -> bool:
        """True once the session has yielded its play."""
        return self.play_id is not None

    @property
    def expires_at(self) -> datetime:
        """When the session ends unless a report comes first."""
        return self.last_report_at + self.timeout

    def expire_if_due(self, now: datetime) -> bool:
        """Record the expiry if the timeout has run out; True if the session is expired."""
        if self.ended == "expired":
            return True
        if self.ended is None and now >= self.expires_at:
            self._expired(heard_ms=self.heard_ms, at=self.expires_at)
            return True
        return False

    @event(Expired)
    def _expired(self, heard_ms: int, at: datetime) -> None:
        self.playing = False
        self.ended = "expired"

    def _position(self, field: str, raw: int | None) -> int:
        if raw is None:
            raise InvalidValue(field, "is required")
        if raw < 0:
            raise InvalidValue(field, "must not be negative")
        # Players' idea of the duration differs a little from the file's: clamp, do not refuse.
        return min(raw, self.duration_ms)

    def _heard_until(self, position_ms: int) -> int:
        if not self.playing:
            return self.heard_ms
        # A playhead behind the interval's start without a seek proves nothing was heard.
        return self.heard_ms + max(0, position_ms - self.anchor_ms)

    def report(
        self,
        action: str,
        position_ms: int | None,
        to_ms: int | None,
        now: datetime,
        play_id: UUID,
    ) -> bool:
        """Apply what the player did; True when this report made the session's play.

        Call :meth:`expire_if_due` first. Reports that change nothing (pausing a
        paused session, stopping a stopped one) record nothing.
        """
        if action not in ACTIONS:
            raise InvalidValue("action", f"must be one of {', '.join(ACTIONS)}")
        if self.ended == "stopped" and action == "stop":
            return False
        if self.ended is not None:
            raise StateConflict(f"this playback session has {self.ended}")
        position = self._position("position_ms", position_ms)
        heard = self._heard_until(position)
        if action == "pause":
            if not self.playing:
                return False
            self._paused(position_ms=position, heard_ms=heard, at=now)
        elif action == "resume":
            if self.playing:
                return False
            self._resumed(position_ms=position, at=now)
        elif action == "progress":
            if not self.playing:
                return False
            self._progressed(position_ms=position, heard_ms=heard, at=now)
        elif action == "seek":
            target = self._position("to_ms", to_ms)
            self._seeked(position_ms=position, to_ms=target, heard_ms=heard, at=now)
        else:
            self._stopped(position_ms=position, heard_ms=heard, at=now)
        if self.play_id is None and self.heard_ms >= self.threshold_ms:
            self._play_counted(play_id=play_id, heard_ms=self.heard_ms, at=now)
            return True
        return False

    @event(Paused)
    def _paused(self, position_ms: int, heard_ms: int, at: datetime) -> None:
        self.playing = False
        self.playhead_ms = position_ms
        self.heard_ms = heard_ms
        self.last_report_at = at

    @event(Resumed)
    def _resumed(self, position_ms: int, at: datetime) -> None:
        self.playing = True
        self.anchor_ms = position_ms
        self.playhead_ms = position_ms
        self.last_report_at = at

    @event(Progressed)
    def _progressed(self, position_ms: int, heard_ms: int, at: datetime) -> None:
        self.anchor_ms = position_ms
        self.playhead_ms = position_ms
        self.heard_ms = heard_ms
        self.last_report_at = at

    @event(Seeked)
    def _seeked(self, position_ms: int, to_ms: int, heard_ms: int, at: datetime) -> None:
        self.anchor_ms = to_ms
        self.playhead_ms = to_ms
        self.heard_ms = heard_ms
        self.last_report_at = at

    @event(Stopped)
    def _stopped(self, position_ms: int, heard_ms: int, at: datetime) -> None:
        self.playing = False
        self.playhead_ms = position_ms
        self.heard_ms = heard_ms
        self.last_report_at = at
        self.ended = "stopped"

    @event(PlayCounted)
    def _play_counted(self, play_id: UUID, heard_ms: int, at: datetime) -> None:
        self.play_id = play_id
