"""The data a benchmark starts from, made through the application and the domain.

Users register through the real command (with cheap password hashing), tracks
are real ``Track.upload`` aggregates saved in large batches (their audio is
not needed by the command and replay scenarios), and access tokens come from
the real ``/api/v1/auth/token`` endpoint.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import httpx

from domain.tracks import AudioFacts, Track, TrackMetadata
from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings

# A throwaway account in a throwaway database.
PASSWORD = "bench-password-1"


def settings_from(env: dict[str, str]) -> Settings:
    """Settings from THEPLAYLIST_* variables, without reading the process environment."""
    return Settings.model_validate(
        {k.removeprefix("THEPLAYLIST_").lower(): v for k, v in env.items()}
    )


def username(index: int) -> str:
    """The username of bench user ``index``."""
    return f"bench{index:06d}"


def register_users(container: Container, count: int) -> list[UUID]:
    """``count`` users, registered concurrently through the command."""

    def register(index: int) -> UUID:
        return container.app.register_user(
            username(index), f"{username(index)}@example.com", PASSWORD
        ).value

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(register, range(count)))


def audio_facts(seed: str, duration_ms: int = 180_000) -> AudioFacts:
    """Plausible facts of an MP3 that was never uploaded."""
    return AudioFacts(
        sha256=hashlib.sha256(seed.encode()).hexdigest(),
        size_bytes=4_000_000,
        mime_type="audio/mpeg",
        extension="mp3",
        duration_ms=duration_ms,
        bitrate=192_000,
        sample_rate=44_100,
        channels=2,
    )


def make_tracks(container: Container, uploader_id: UUID, count: int) -> list[UUID]:
    """``count`` tracks uploaded by ``uploader_id``, saved 500 per transaction."""
    ids: list[UUID] = []
    pending: list[Track] = []
    for index in range(count):
        track = Track.upload(
            uuid4(),
            uploader_id,
            audio_facts(f"track-{index}-{uuid4()}"),
            TrackMetadata(
                title=f"Track {index}",
                artist=f"Artist {index % 997}",
                album=f"Album {index % 311}",
                genre=("rock", "jazz", "pop", "folk", "electro")[index % 5],
                year=1960 + index % 60,
            ),
        )
        pending.append(track)
        ids.append(track.id)
        if len(pending) == 500:
            container.app.save(*pending)
            pending.clear()
    if pending:
        container.app.save(*pending)
    return ids


def access_tokens(base_url: str, count: int) -> list[str]:
    """A bearer token for each of the first ``count`` bench users, from the token endpoint."""

    def token(index: int) -> str:
        response = httpx.post(
            f"{base_url}/api/v1/auth/token",
            data={"username": username(index), "password": PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        value: str = response.json()["access_token"]
        return value

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(token, range(count)))


def populated(env: dict[str, str], users: int, tracks: int) -> tuple[list[UUID], list[UUID]]:
    """Register users and upload tracks into the store ``env`` points at."""
    container = build(settings_from(env))
    try:
        user_ids = register_users(container, users)
        track_ids = make_tracks(container, user_ids[0], tracks) if tracks else []
    finally:
        container.close()
    return user_ids, track_ids
