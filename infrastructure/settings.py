"""The one settings object: environment variables prefixed ``THEPLAYLIST_`` (and ``.env``).

A bad value stops start-up with a message naming the setting. In production
mode, unsafe defaults are refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_MIN_SECRET_LENGTH = 32
_URI_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
# Upper bound of the spans that become timedeltas or cookie/token expiry dates:
# far beyond any sensible value, far below where datetime arithmetic overflows.
_TEN_YEARS_SECONDS = 10 * 365 * 24 * 3600
# S3's largest part and largest single PUT: beyond it uploads fail at the bucket.
_S3_MAX_PART_BYTES = 5 * 1024 * 1024 * 1024
# Argon2 needs 8 KiB of memory per lane (argon2-cffi: "Memory cost is too small").
_ARGON2_KIB_PER_LANE = 8


class Settings(BaseSettings):
    """Every setting of ThePlaylist, validated."""

    model_config = SettingsConfigDict(
        env_prefix="THEPLAYLIST_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path("./var")
    database_url: str | None = None
    database_schema: str = Field("public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Read-model connections each process keeps open: its query threads, its
    # projectors and the stream lookups at once. A pool smaller than that
    # opens and closes a connection per request (measured: 15% of a loaded
    # query service's busy time went to connecting with 5).
    database_pool_size: int = Field(20, ge=1, le=500)
    storage: Literal["disk", "s3"] = "disk"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Where clients reach the bucket, for presigned URLs (default: the endpoint above).
    s3_public_endpoint_url: str | None = None
    # How long a presigned URL stays valid (SigV4 allows at most 7 days).
    s3_presign_ttl_seconds: int = Field(300, ge=1, le=7 * 24 * 3600)
    # Multipart uploads above this size, in parts of this size (S3 needs >= 5 MiB parts).
    s3_multipart_threshold_bytes: int = Field(
        64 * 1024 * 1024, ge=5 * 1024 * 1024, le=_S3_MAX_PART_BYTES
    )
    s3_multipart_chunk_bytes: int = Field(
        8 * 1024 * 1024, ge=5 * 1024 * 1024, le=_S3_MAX_PART_BYTES
    )
    s3_max_concurrency: int = Field(4, ge=1, le=32)
    # Blob storage calls: consecutive failures that open the circuit breaker, how long it
    # stays open before a trial call, and a time limit per kind of call.
    storage_breaker_failure_threshold: int = Field(5, ge=1, le=1000)
    storage_breaker_recovery_seconds: float = Field(30.0, gt=0, le=3600)
    storage_connect_timeout_seconds: float = Field(3.0, gt=0, le=300)
    storage_upload_timeout_seconds: float = Field(600.0, gt=0, le=24 * 3600)
    storage_read_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    storage_delete_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    # Blobs younger than this are left alone by `storage gc` (uploads may be in flight).
    storage_gc_grace_seconds: int = Field(3600, ge=0, le=_TEN_YEARS_SECONDS)
    # Accepted audio, judged by content (canonical MIME types, comma-separated).
    allowed_audio_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "audio/mpeg",
            "audio/flac",
            "audio/ogg",
            "audio/opus",
            "audio/mp4",
            "audio/wav",
        ]
    )
    track_text_max_length: int = Field(200, ge=1, le=1000)
    # Ranges up to this size are served from memory; larger ones stream in chunks.
    stream_memory_threshold_bytes: int = Field(1024 * 1024, ge=0, le=64 * 1024 * 1024)
    stream_chunk_bytes: int = Field(1024 * 1024, ge=4096, le=16 * 1024 * 1024)
    # Who sends the bytes of streams and downloads: this service (direct), nginx after an
    # X-Accel-Redirect to the blob's file (disk storage), or S3 after a redirect to a
    # presigned URL (s3 storage). See docs/streaming.md.
    stream_delivery: Literal["direct", "x-accel-redirect", "s3-presigned"] = "direct"
    # The nginx `internal` location that maps onto the blob directory.
    stream_accel_prefix: str = "/_protected_blobs/"

    secret_key: SecretStr | None = None
    production: bool = False
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    access_token_ttl_seconds: int = Field(900, ge=30, le=_TEN_YEARS_SECONDS)
    access_token_renew_within_seconds: int = Field(300, ge=0, le=_TEN_YEARS_SECONDS)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=60, le=_TEN_YEARS_SECONDS)

    username_min_length: int = Field(3, ge=1, le=128)
    username_max_length: int = Field(32, ge=1, le=128)
    username_pattern: str = r"^[A-Za-z0-9_.-]+$"
    email_max_length: int = Field(254, ge=6)
    password_min_length: int = Field(8, ge=1, le=4096)
    password_max_length: int = Field(256, ge=8, le=4096)

    # Bounded so that hashing stays possible: every login and the decoy hash at
    # start-up pay time_cost passes over memory_cost_kib (4 GiB at most), and
    # argon2 itself takes no more than 32-bit values.
    argon2_time_cost: int = Field(3, ge=1, le=100)
    argon2_memory_cost_kib: int = Field(65536, ge=8, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(4, ge=1, le=255)

    max_track_bytes: int = Field(104_857_600, ge=1)
    max_json_body_bytes: int = Field(1_048_576, ge=1024)
    # Both end up in SQL LIMIT clauses, which take 64-bit integers at most.
    page_limit_default: int = Field(20, ge=1, le=100_000)
    page_limit_max: int = Field(100, ge=1, le=100_000)

    playlist_name_max_length: int = Field(100, ge=1, le=1000)
    playlist_description_max_length: int = Field(2000, ge=0, le=100_000)
    playlist_max_entries: int = Field(1000, ge=1, le=100_000)
    # A playback session without a report for this long is over (judged on what it heard).
    playback_session_timeout_seconds: int = Field(1800, ge=10, le=7 * 24 * 3600)
    # Cap on the buckets one stats/tracks/{id}/plays answer may hold.
    stats_max_buckets: int = Field(2000, ge=1, le=100_000)

    command_retry_attempts: int = Field(8, ge=1, le=100)
    # Group commit: concurrent commands share one event-store transaction
    # (both backends gain from it; see docs/benchmarks.md).
    group_commit: bool = True
    group_commit_max_batch: int = Field(64, ge=1, le=1024)
    projection_batch_size: int = Field(500, ge=1, le=100_000)
    projection_poll_interval_seconds: float = Field(0.05, gt=0, le=10)
    # Least time between two batches of one projector: under load, the commits
    # of that time share one batch (see ProjectionRunner.run).
    projection_coalesce_seconds: float = Field(0.02, ge=0, le=1)
    min_position_wait_seconds: float = Field(5.0, ge=0, le=60)
    # Rendered query answers each query process keeps until the read models change
    # (projections/queries/answers.py); 0 turns the cache off.
    query_cache_bytes: int = Field(64 * 1024 * 1024, ge=0, le=16 * 1024**3)
    # Rebuilds replay in bigger batches than live projection (one transaction each).
    projection_rebuild_batch_size: int = Field(2000, ge=1, le=100_000)
    # A projector whose version changed is rebuilt when the projectors start.
    projection_auto_rebuild: bool = True
    # Events per read when verifying or exporting the whole log (memory stays constant).
    audit_batch_size: int = Field(1000, ge=1, le=100_000)
    # How long an Idempotency-Key is remembered, and how long a request that
    # reuses the key of one still running waits for its outcome.
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60, le=30 * 24 * 3600)
    idempotency_wait_seconds: float = Field(10.0, ge=0, le=300)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("data_dir", mode="before")
    @classmethod
    def _refuse_empty_data_dir(cls, value: object) -> object:
        # Path("") is the current directory: an unset variable would scatter
        # the databases wherever the command happens to run.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (use . for the current directory)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        # A quoted "~/x" reaches us unexpanded; taken literally it makes a "~" directory.
        try:
            return value.expanduser()
        except RuntimeError as error:
            raise ValueError(f"cannot expand {str(value)!r}: {error}") from None

    @field_validator("secret_key")
    @classmethod
    def _refuse_blank_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An unexpanded variable would otherwise sign every token with an empty key.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty; leave it unset to use a generated key")
        return value

    @field_validator("username_pattern")
    @classmethod
    def _compile_username_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"is not a valid regular expression: {error}") from None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator("allowed_audio_types", mode="before")
    @classmethod
    def _split_audio_types(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("allowed_audio_types")
    @classmethod
    def _check_audio_types(cls, value: list[str]) -> list[str]:
        from infrastructure.media import check_allowed_types

        return sorted(check_allowed_types(value))

    @field_validator("stream_accel_prefix")
    @classmethod
    def _check_accel_prefix(cls, value: str) -> str:
        segments = value.split("/")[1:-1]
        if (
            not value.startswith("/")
            or not value.endswith("/")
            or not segments
            or any(not _URI_SEGMENT.fullmatch(s) or set(s) == {"."} for s in segments)
        ):
            raise ValueError(
                "must start and end with '/' and name a path of plain segments "
                "(for example /_protected_blobs/)"
            )
        return value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _check_s3_endpoint(cls, value: str | None) -> str | None:
        # Checked here so a mistyped endpoint stops start-up instead of the
        # first upload or presigned URL.
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        _check_port(value)
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"postgresql", "postgres"} or not parts.hostname:
            raise ValueError("must be a postgresql://user:password@host:port/dbname URL")
        _check_port(value)
        if not parts.path.strip("/"):
            raise ValueError("must name a database: postgresql://.../dbname")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.page_limit_default > self.page_limit_max:
            raise ValueError("THEPLAYLIST_PAGE_LIMIT_DEFAULT must not exceed PAGE_LIMIT_MAX")
        if self.username_min_length > self.username_max_length:
            raise ValueError("THEPLAYLIST_USERNAME_MIN_LENGTH must not exceed USERNAME_MAX_LENGTH")
        if self.password_min_length > self.password_max_length:
            raise ValueError("THEPLAYLIST_PASSWORD_MIN_LENGTH must not exceed PASSWORD_MAX_LENGTH")
        if self.argon2_memory_cost_kib < _ARGON2_KIB_PER_LANE * self.argon2_parallelism:
            raise ValueError(
                "THEPLAYLIST_ARGON2_MEMORY_COST_KIB must be at least "
                f"{_ARGON2_KIB_PER_LANE} x THEPLAYLIST_ARGON2_PARALLELISM "
                f"({_ARGON2_KIB_PER_LANE * self.argon2_parallelism} here)"
            )
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("THEPLAYLIST_S3_BUCKET is required when THEPLAYLIST_STORAGE=s3")
        if self.stream_delivery == "x-accel-redirect" and self.storage != "disk":
            raise ValueError(
                "THEPLAYLIST_STREAM_DELIVERY=x-accel-redirect needs THEPLAYLIST_STORAGE=disk "
                "(nginx serves the blob files itself); with s3 storage use s3-presigned or direct"
            )
        if self.stream_delivery == "s3-presigned" and self.storage != "s3":
            raise ValueError(
                "THEPLAYLIST_STREAM_DELIVERY=s3-presigned needs THEPLAYLIST_STORAGE=s3 "
                "(clients are redirected to the bucket); with disk storage use "
                "x-accel-redirect or direct"
            )
        if self.production:
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if not _strong_enough(key):
                raise ValueError(
                    "THEPLAYLIST_SECRET_KEY is required in production: at least "
                    f"{_MIN_SECRET_LENGTH} random characters"
                )
            if not self.cookie_secure:
                raise ValueError("THEPLAYLIST_COOKIE_SECURE=false is refused in production")
            if self.database_url is None:
                raise ValueError("THEPLAYLIST_DATABASE_URL is required in production")
        elif self.secret_key is None and os.path.lexists(self._key_file):
            # Checked now, not when the first token is signed: a broken key file
            # must stop start-up with a message, not fail a command halfway.
            _read_key_file(self._key_file)
        return self

    @property
    def uses_postgres(self) -> bool:
        """True when the event store and read models live in PostgreSQL."""
        return self.database_url is not None

    def postgres_parts(self) -> dict[str, str]:
        """Host, port, database, user and password from the database URL."""
        if self.database_url is None:
            raise ValueError("no THEPLAYLIST_DATABASE_URL")
        parts = urlsplit(self.database_url)
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "dbname": unquote(parts.path.lstrip("/")),
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
        }

    def signing_key(self) -> str:
        """The token-signing key: the configured one, else one kept under the data dir.

        The generated key is created once (mode 0600) and reused, so tokens survive
        restarts of the embedded default. A kept key that is unreadable, empty or
        weak raises ValueError (validation refuses it already at start-up).
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self._key_file
        if not os.path.lexists(path):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            candidate = self.data_dir / f".secret_key.{secrets.token_hex(8)}"
            candidate.write_text(secrets.token_urlsafe(48))
            candidate.chmod(0o600)
            # link() refuses to replace: if another process won the race, its key is the key.
            with contextlib.suppress(FileExistsError):
                os.link(candidate, path)
            candidate.unlink()
        return _read_key_file(path)

    @property
    def _key_file(self) -> Path:
        # Where the generated key lives when THEPLAYLIST_SECRET_KEY is unset.
        return self.data_dir / "secret_key"


def _strong_enough(key: str) -> bool:
    # Long and varied enough to be random, not a word or a repeated character.
    return len(key) >= _MIN_SECRET_LENGTH and len(set(key)) >= 10


def _check_port(url: str) -> None:
    # urlsplit parses lazily: a bad port only raises when .port is read, which
    # would otherwise happen at the first connection, far from start-up.
    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has an invalid port: it must be a number from 1 to 65535")


def _read_key_file(path: Path) -> str:
    """The token-signing key kept in ``path``, refused unless it looks generated."""
    advice = "remove it to have a new key generated, or set THEPLAYLIST_SECRET_KEY"
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not text"
        raise ValueError(
            f"THEPLAYLIST_SECRET_KEY is unset and its key file {path} cannot be read "
            f"({reason}); {advice}"
        ) from None
    if not _strong_enough(key):
        raise ValueError(
            f"THEPLAYLIST_SECRET_KEY is unset and its key file {path} holds "
            f"{'no key' if not key else 'a key too weak to sign tokens'} (at least "
            f"{_MIN_SECRET_LENGTH} random characters are needed); {advice}"
        )
    return key
