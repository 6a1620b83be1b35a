"""The read-model tables. Projectors own them; the query service only reads them.

Described for analytics readers in ``docs/read-models.md``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    and_,
    event,
    text,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            # PostgreSQL's, on connections set to UTC (infrastructure.database):
            # a page of tracks has hundreds, and each conversion is a new object.
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


log = logging.getLogger(__name__)

metadata = MetaData()

projection_positions = Table(
    "projection_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    # Highest log position seen, handled or skipped: waiting for any position works.
    Column("position", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("username", String(128), nullable=False),
    # Sealed with the user's key (the vault's): unreadable once the key is forgotten.
    Column("sealed_email", String(600), nullable=True),
    Column("roles", String(200), nullable=False, default=""),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

auth_sessions = Table(
    "auth_sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("client", String(200), nullable=False),
    Column("client_family", String(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_refreshed_at", UtcDateTime(), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revoke_reason", String(64), nullable=True),
    Index("ix_auth_sessions_user", "user_id", "created_at"),
)


# --- playlists, reactions, plays and listening analytics (projections "playlists",
# "reactions", "listening"); described for analysts in docs/read-models.md.


def _counts() -> list[Column[int]]:
    # Set-based increments only (``likes = likes + 1``): exact under any concurrency.
    return [
        Column(name, BigInteger, nullable=False, default=0, server_default="0")
        for name in ("likes", "dislikes", "loves", "plays")
    ]


playlists = Table(
    "playlists",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner_id", Uuid, nullable=False),
    Column("name", String(1000), nullable=False),
    Column("description", Text, nullable=False),
    # casefold(name) and casefold(description): sorting by name, searching either.
    Column("name_key", String(1000), nullable=False),
    Column("description_key", Text, nullable=False),
    Column("visibility", String(16), nullable=False),
    # The aggregate's version: what If-Match compares with.
    Column("version", BigInteger, nullable=False),
    Column("entry_count", Integer, nullable=False, default=0),
    *_counts(),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_playlists_owner", "owner_id", "created_at"),
)

_LISTED = and_(playlists.c.visibility == "public", playlists.c.deleted.is_(False))
for _key in ("created_at", "name_key", "likes", "loves", "plays"):
    Index(
        f"ix_playlists_listed_{_key}",
        playlists.c[_key],
        playlists.c.id,
        postgresql_where=_LISTED,
        sqlite_where=_LISTED,
    )

playlist_entries = Table(
    "playlist_entries",
    metadata,
    Column("entry_id", Uuid, primary_key=True),
    Column("playlist_id", Uuid, nullable=False),
    # 0..n-1 within the playlist (no unique constraint: shifts happen in one UPDATE).
    Column("position", Integer, nullable=False),
    Column("track_id", Uuid, nullable=False),
    # The track was deleted; the entry stays until the owner removes it.
    Column("unavailable", Boolean, nullable=False, default=False),
    Column("added_at", UtcDateTime(), nullable=False),
    Index("ix_playlist_entries_order", "playlist_id", "position"),
    Index("ix_playlist_entries_track", "track_id"),
)

reactions = Table(
    "reactions",
    metadata,
    # The Reaction aggregate's id: uuid5 of (user, target).
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", Uuid, nullable=False),
    Column("liked", Boolean, nullable=False, default=False),
    Column("disliked", Boolean, nullable=False, default=False),
    Column("loved", Boolean, nullable=False, default=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_reactions_user_target", "user_id", "target_id", unique=True),
    Index("ix_reactions_target", "target_id"),
)

plays = Table(
    "plays",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", Uuid, nullable=False),
    Column("played_at", UtcDateTime(), nullable=False),
    # "direct" (POST .../plays) or "session" (a playback session reached its threshold).
    Column("source", String(16), nullable=False),
    Column("playlist_id", Uuid, nullable=True),
    Column("session_id", Uuid, nullable=True),
    Index("ix_plays_user_time", "user_id", "played_at", "id"),
    Index("ix_plays_target_time", "target_kind", "target_id", "played_at"),
    Index("ix_plays_kind_time", "target_kind", "played_at"),
)

reaction_changes = Table(
    "reaction_changes",
    metadata,
    Column("reaction_id", Uuid, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", Uuid, nullable=False),
    # +1 when the reaction was set, -1 when it was cleared or displaced.
    Column("delta", SmallInteger, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("reaction_id", "version", "kind"),
    Index("ix_reaction_changes_kind_time", "target_kind", "kind", "at"),
)

stats_hourly = Table(
    "stats_hourly",
    metadata,
    Column("target_kind", String(16), nullable=False),
    Column("target_id", Uuid, nullable=False),
    # The UTC hour the events fell in (minutes and seconds zero).
    Column("hour", UtcDateTime(), nullable=False),
    # Net changes within the hour: plays added; likes, dislikes, loves set minus cleared.
    *_counts(),
    PrimaryKeyConstraint("target_kind", "target_id", "hour"),
    Index("ix_stats_hourly_kind_hour", "target_kind", "hour"),
)


# --- tracks (projection "tracks"); described for analysts in docs/read-models.md.

tracks = Table(
    "tracks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("uploader_id", Uuid, nullable=False),
    Column("title", String(1000), nullable=False),
    Column("artist", String(1000), nullable=True),
    Column("album", String(1000), nullable=True),
    Column("genre", String(1000), nullable=True),
    Column("year", Integer, nullable=True),
    Column("duration_ms", BigInteger, nullable=False),
    Column("bitrate", Integer, nullable=True),
    Column("sample_rate", Integer, nullable=True),
    Column("channels", SmallInteger, nullable=True),
    Column("mime_type", String(64), nullable=False),
    Column("extension", String(16), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    # casefold(title), and casefold of title, artist and album: sorting and searching.
    Column("title_key", String(1000), nullable=False),
    Column("search_text", Text, nullable=False),
    *_counts(),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_tracks_uploader", "uploader_id", "created_at", "id"),
    Index("ix_tracks_sha256", "sha256"),
)
for _key in ("created_at", "title_key", "plays", "likes", "loves"):
    Index(f"ix_tracks_{_key}", tracks.c[_key], tracks.c.id)


def _create_track_search_index(table: Table, connection: Connection, **_: Any) -> None:
    """On PostgreSQL, a trigram index makes ``search_text LIKE '%term%'`` an index scan.

    pg_trgm ships with PostgreSQL and is a trusted extension; where it cannot be
    installed the search still works, by scanning.
    """
    if connection.dialect.name != "postgresql":
        return
    find = text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    schema = connection.execute(find).scalar()
    for statement in (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    ):
        if schema is not None:
            break
        try:
            with connection.begin_nested():
                connection.execute(text(statement))
        except DBAPIError as error:
            log.info("pg_trgm: %s failed: %s", statement, error.orig)
        schema = connection.execute(find).scalar()
    if schema is None:
        log.warning("pg_trgm is not available: track search will scan the tracks table")
        return
    quote = connection.dialect.identifier_preparer.quote
    connection.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS ix_tracks_search_trgm ON {quote(table.name)}"
            f" USING gin (search_text {quote(schema)}.gin_trgm_ops)"
        )
    )


event.listen(tracks, "after_create", _create_track_search_index)


def read_models_channel(schema: str) -> str:
    """The NOTIFY channel that tells when the read models of ``schema`` changed.

    One per schema (several deployments may share a database); hashed, since a
    channel name is an identifier of at most 63 bytes, as a schema name is.
    """
    return "read_models_" + hashlib.sha256(schema.encode()).hexdigest()[:24]


def install_change_notice(connection: Connection) -> None:
    """On PostgreSQL, NOTIFY :func:`read_models_channel` when a transaction that
    moved a projection's position commits.

    Every write to the read models moves a position in the same transaction
    (a projector's batch, a rebuild's switch), so the trigger sits on that one
    table: no writer can forget it. NOTIFY is delivered at commit, once per
    transaction and channel however many statements fired it.
    """
    if connection.dialect.name != "postgresql":
        return
    schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    installed = connection.execute(
        text(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE t.tgname = 'read_models_changed' AND n.nspname = :schema"
            " AND c.relname = 'projection_positions'"
        ),
        {"schema": schema},
    ).first()
    if installed is not None:
        return
    channel = read_models_channel(schema)
    connection.execute(
        text(
            "CREATE OR REPLACE FUNCTION read_models_changed() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN"
            f" PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$"
        )
    )
    connection.execute(
        text(
            "CREATE TRIGGER read_models_changed"
            " AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON projection_positions"
            " FOR EACH STATEMENT EXECUTE FUNCTION read_models_changed()"
        )
    )
