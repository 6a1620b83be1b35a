"""ThePlaylist: the one event-sourced application that every command goes through.

All aggregates share one event store, so the log has one global order that the
projectors follow and auditors read. The commands are grouped by subject in
mixins (``application.users``, ``application.sessions``...), one public method
per command.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.utils import EnvType

from application.context import Rules
from application.playlists import PlaylistCommands
from application.plays import PlayCommands
from application.ports import BlobStore, Clock, MediaInspector, PasswordHasher, PersonalDataVault
from application.reactions import ReactionCommands
from application.sessions import SessionCommands
from application.tracks import TrackCommands
from application.unit_of_work import CommandRunner, GroupCommitRunner


class ThePlaylist(
    TrackCommands,
    PlaylistCommands,
    ReactionCommands,
    PlayCommands,
    SessionCommands,
    Application[UUID],
):
    """The write side. Build it with :func:`infrastructure.bootstrap.build`."""

    name = "ThePlaylist"

    def __init__(
        self,
        env: EnvType,
        *,
        clock: Clock,
        hasher: PasswordHasher,
        vault: PersonalDataVault,
        rules: Rules,
        blobs: BlobStore,
        media: MediaInspector,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(env)
        self._clock = clock
        self._hasher = hasher
        self._vault = vault
        self._rules = rules
        self._blobs = blobs
        self._media = media
        self._track_rules = rules.tracks
        self._runner = (
            GroupCommitRunner(
                self, rules.command_attempts, on_commit, max_batch=rules.group_commit_max_batch
            )
            if rules.group_commit
            else CommandRunner(self, rules.command_attempts, on_commit)
        )

    async def drain(self) -> None:
        """Wait until the commands queued on the running event loop are committed."""
        await self._runner.drain()

    def close(self) -> None:
        """Commit the commands still queued, then release the event store."""
        self._runner.close()
        super().close()

    @property
    def head(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self._runner.head()
