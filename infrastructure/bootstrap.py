"""The composition root: the one place that picks adapters and wires the layers.

Called from the ASGI lifespans and the CLI, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine

from application.app import ThePlaylist
from application.audit import Audit
from application.context import Rules
from application.ports import Clock
from domain.playlists import PlaylistRules
from domain.tracks import TrackRules
from domain.users import AccountRules
from infrastructure.blobs import open_blob_store
from infrastructure.blobs.breaker import GuardedBlobStore
from infrastructure.chain import event_log
from infrastructure.clock import SystemClock
from infrastructure.database import create_database_engine
from infrastructure.eventstore import event_store_env
from infrastructure.idempotency import SqlIdempotencyStore
from infrastructure.media import LibmagicMutagenInspector
from infrastructure.passwords import Argon2PasswordHasher
from infrastructure.read_model_changes import NotifiedChanges, PolledChanges
from infrastructure.settings import Settings
from infrastructure.startup_lock import startup_lock
from infrastructure.tokens import AccessTokens
from infrastructure.vault import SqlPersonalDataVault
from infrastructure.wakeup import Broadcast, PostgresListener
from projections.blob_cleanup import BlobCleanup
from projections.listening import ListeningProjector
from projections.playlists import PlaylistsProjector
from projections.progress import ProjectionProgress
from projections.projector import Projector
from projections.queries.answers import AnswerKey, CurrentAnswers, ReadModelChanges, Rendered
from projections.queries.listening import ListeningQueries, Ranked, RankingKey
from projections.queries.playlists import PlaylistQueries
from projections.queries.positions import PositionQueries
from projections.queries.reactions import ReactionQueries
from projections.queries.recent import RecentReads
from projections.queries.sessions import SessionQueries
from projections.queries.tracks import TrackQueries, TrackRow
from projections.queries.users import UserQueries
from projections.reactions import ReactionsProjector
from projections.rebuild import Progress, ProjectionRebuild, upgrading
from projections.runner import PolicyRunner, ProjectionRunner, create_read_models
from projections.sessions import SessionsProjector
from projections.tracks import TracksProjector
from projections.users import UsersProjector
from projections.worker import ProjectionWorker

log = logging.getLogger(__name__)

# How often projectors look at the log unprompted when NOTIFY wakes them anyway.
_LISTENING_POLL_SECONDS = 1.0


@dataclass
class Queries:
    """The read side's query objects."""

    users: UserQueries
    sessions: SessionQueries
    positions: PositionQueries
    playlists: PlaylistQueries
    reactions: ReactionQueries
    listening: ListeningQueries
    tracks: TrackQueries


@dataclass
class Container:
    """Everything a process needs, built once from settings."""

    settings: Settings
    app: ThePlaylist
    read_engine: Engine
    vault_engine: Engine
    clock: Clock
    tokens: AccessTokens
    queries: Queries
    projectors: list[Projector]
    broadcast: Broadcast
    audit: Audit
    idempotency: SqlIdempotencyStore
    blobs: GuardedBlobStore
    # Wakes queries waiting for X-Min-Position when this process's projectors commit.
    progress: ProjectionProgress = field(default_factory=ProjectionProgress)
    # Hot reads of the last moments (projections.queries.recent): the audio
    # routes' tracks (a player's ranges ask again and again) and the top lists.
    recent_tracks: RecentReads[UUID, TrackRow] = field(default_factory=RecentReads)
    # Rankings are kept with the stamp of the read models they were made from.
    recent_rankings: RecentReads[RankingKey, tuple[Hashable | None, list[Ranked]]] = field(
        default_factory=RecentReads
    )
    # Rendered answers of the query service, kept until the read models change
    # (None when THEPLAYLIST_QUERY_CACHE_BYTES is 0).
    answers: CurrentAnswers[AnswerKey, Rendered] | None = None
    _worker: ProjectionWorker | None = field(default=None, repr=False)
    _listener: PostgresListener | None = field(default=None, repr=False)

    def runners(self) -> list[ProjectionRunner]:
        """A runner per projector, over this container's event store."""
        return [
            (PolicyRunner if projector.policy else ProjectionRunner)(
                projector,
                self.read_engine,
                self.app.recorder,
                self.app.mapper,
                batch_size=self.settings.projection_batch_size,
            )
            for projector in self.projectors
        ]

    def rebuild(self, name: str, progress: Progress | None = None) -> ProjectionRebuild:
        """A rebuild of one read model; :class:`LookupError` for an unknown name."""
        for projector in self.projectors:
            if projector.name == name:
                return ProjectionRebuild(
                    projector,
                    self.read_engine,
                    self.app.recorder,
                    self.app.mapper,
                    batch_size=self.settings.projection_rebuild_batch_size,
                    progress=progress,
                )
        raise LookupError(name)

    def start_projections(self) -> None:
        """Run the projectors in background threads of this process."""
        if self._worker is not None:
            return
        current = self.runners()
        runners = current
        if self.settings.projection_auto_rebuild:
            # A projector whose version changed rebuilds its read model first.
            batch = self.settings.projection_batch_size
            runners = [upgrading(r, self.rebuild(r.name), batch) for r in current]
        recorder = self.app.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            self._listener = PostgresListener(
                make_conninfo(**self.settings.postgres_parts()),
                recorder.channel_name,
                self.broadcast,
            )
        # With LISTEN/NOTIFY every commit wakes the projectors, so polling is
        # only a safety net; idle polling by each projector every 50 ms cost
        # ~300 queries/s on an idle PostgreSQL. SQLite has no NOTIFY: writes
        # by other processes are found by polling.
        poll = self.settings.projection_poll_interval_seconds
        # The rebuilding ones read the log into their shadows on their own.
        together = [r for r in runners if r in current and not r.projector.policy]
        self._worker = ProjectionWorker(
            together,
            [r for r in runners if r not in together],
            self.broadcast.subscribe,
            max(poll, _LISTENING_POLL_SECONDS) if self._listener is not None else poll,
            self.settings.projection_coalesce_seconds,
            self.progress.advanced,
        )
        if self._listener is not None:
            self._listener.start()
        self._worker.start()

    def close(self) -> None:
        """Stop the projectors and release every connection."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self.answers is not None:
            self.answers.changes.close()
        self.app.close()
        self.blobs.close()
        self.read_engine.dispose()
        self.vault_engine.dispose()
        self.idempotency.close()


def build(settings: Settings, *, clock: Clock | None = None) -> Container:
    """Build the container: event store, read models, vault, tokens, projectors.

    Under the start-up lock: processes started together on a fresh database would
    otherwise race to create the same tables, and all but one would crash.
    """
    with startup_lock(settings):
        return _build(settings, clock=clock)


def _build(settings: Settings, *, clock: Clock | None = None) -> Container:
    # Tests pass a clock of their own to step through time without sleeping.
    clock = clock if clock is not None else SystemClock()
    read_engine = create_database_engine(
        settings, "readmodels", pool_size=settings.database_pool_size
    )
    vault_engine = create_database_engine(settings, "vault", pool_size=4)
    create_read_models(read_engine)
    # Queries only read, one statement at a time (READ COMMITTED sees each
    # statement's own snapshot anyway): autocommit spares every checkout a
    # BEGIN and a ROLLBACK round trip. Same pool as the projectors.
    reads = read_engine.execution_options(isolation_level="AUTOCOMMIT")
    vault = SqlPersonalDataVault(vault_engine)
    broadcast = Broadcast()
    blobs = open_blob_store(settings)
    app = ThePlaylist(
        event_store_env(settings),
        clock=clock,
        hasher=Argon2PasswordHasher(
            settings.argon2_time_cost,
            settings.argon2_memory_cost_kib,
            settings.argon2_parallelism,
        ),
        vault=vault,
        rules=Rules(
            accounts=AccountRules(
                username_min=settings.username_min_length,
                username_max=settings.username_max_length,
                username_pattern=settings.username_pattern,
                email_max=settings.email_max_length,
                password_min=settings.password_min_length,
                password_max=settings.password_max_length,
            ),
            refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
            command_attempts=settings.command_retry_attempts,
            group_commit=settings.group_commit,
            group_commit_max_batch=settings.group_commit_max_batch,
            playlists=PlaylistRules(
                name_max=settings.playlist_name_max_length,
                description_max=settings.playlist_description_max_length,
                max_entries=settings.playlist_max_entries,
            ),
            playback_timeout=timedelta(seconds=settings.playback_session_timeout_seconds),
            tracks=TrackRules(text_max=settings.track_text_max_length),
        ),
        blobs=blobs,
        media=LibmagicMutagenInspector(settings.allowed_audio_types),
        # Projectors in this process hear of commits at once, even on SQLite.
        on_commit=lambda _position: broadcast.set(),
    )
    return Container(
        settings=settings,
        app=app,
        read_engine=read_engine,
        vault_engine=vault_engine,
        clock=clock,
        tokens=AccessTokens(
            settings.signing_key(), timedelta(seconds=settings.access_token_ttl_seconds)
        ),
        queries=Queries(
            users=UserQueries(read_engine, vault),
            sessions=SessionQueries(read_engine),
            positions=PositionQueries(reads),
            playlists=PlaylistQueries(reads),
            reactions=ReactionQueries(reads),
            listening=ListeningQueries(reads),
            tracks=TrackQueries(reads),
        ),
        projectors=[
            UsersProjector(vault),
            SessionsProjector(),
            PlaylistsProjector(),
            ReactionsProjector(),
            ListeningProjector(),
            TracksProjector(),
            BlobCleanup(app),
        ],
        broadcast=broadcast,
        blobs=blobs,
        audit=Audit(event_log(app.recorder), app, settings.audit_batch_size),
        idempotency=SqlIdempotencyStore(
            create_database_engine(settings, "idempotency", pool_size=4), settings.signing_key()
        ),
        answers=_answers(settings, reads),
    )


def _answers(settings: Settings, reads: Engine) -> CurrentAnswers[AnswerKey, Rendered] | None:
    if settings.query_cache_bytes == 0:
        return None
    changes: ReadModelChanges
    if settings.uses_postgres:
        changes = NotifiedChanges(
            make_conninfo(**settings.postgres_parts()), settings.database_schema
        )
    else:
        changes = PolledChanges(reads)
    return CurrentAnswers(changes, settings.query_cache_bytes)
