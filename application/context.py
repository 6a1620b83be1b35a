"""What every command handler shares: the runner, the ports and the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from application.ports import Clock, PasswordHasher, PersonalDataVault
from application.unit_of_work import CommandRunner
from domain.playlists import PlaylistRules
from domain.tracks import TrackRules
from domain.users import AccountRules


@dataclass(frozen=True)
class Rules:
    """Limits and lifetimes that come from settings."""

    accounts: AccountRules
    refresh_token_ttl: timedelta
    command_attempts: int
    group_commit: bool = False
    group_commit_max_batch: int = 64
    playlists: PlaylistRules = field(default_factory=PlaylistRules)
    playback_timeout: timedelta = timedelta(minutes=30)
    tracks: TrackRules = field(default_factory=TrackRules)


class Handlers:
    """Base of the command mixins; :class:`application.app.ThePlaylist` fills it in."""

    _runner: CommandRunner
    _clock: Clock
    _hasher: PasswordHasher
    _vault: PersonalDataVault
    _rules: Rules
