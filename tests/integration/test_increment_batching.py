"""Batched projection writes end exactly where one event per transaction leaves them.

Counters summed per batch (tracks, playlists), reactions written as the
batch's last word per row, plays and hourly sums written set-based, and the
projectors caught up together (the log read and decoded once for all).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from domain.playlists import Playlist
from domain.plays import Play
from domain.reactions import Reaction
from domain.tracks import AudioFacts, Track, TrackMetadata
from infrastructure.bootstrap import Container
from projections.listening import ListeningProjector
from projections.playlists import PlaylistsProjector
from projections.reactions import ReactionsProjector
from projections.runner import ProjectionGroup, ProjectionRunner
from projections.schema import (
    playlist_entries,
    playlists,
    plays,
    projection_positions,
    reaction_changes,
    reactions,
    stats_hourly,
    tracks,
)
from projections.tracks import TracksProjector

FACTS = AudioFacts("0" * 64, 1000, "audio/mpeg", "mp3", 60_000, 128_000, 44_100, 2)


def counts(container: Container) -> dict[str, list[tuple[Any, ...]]]:
    """The counters of every track and playlist, and every reaction row."""
    with container.read_engine.connect() as conn:
        return {
            "reactions": sorted(tuple(row) for row in conn.execute(select(reactions))),
            "entries": sorted(tuple(row) for row in conn.execute(select(playlist_entries))),
            "playlist rows": sorted(
                tuple(row)
                for row in conn.execute(
                    select(
                        playlists.c.id,
                        playlists.c.entry_count,
                        playlists.c.version,
                        playlists.c.updated_at,
                    )
                )
            ),
            "tracks": sorted(
                tuple(row)
                for row in conn.execute(
                    select(
                        tracks.c.id,
                        tracks.c.likes,
                        tracks.c.dislikes,
                        tracks.c.loves,
                        tracks.c.plays,
                    )
                )
            ),
            "playlists": sorted(
                tuple(row)
                for row in conn.execute(
                    select(
                        playlists.c.id,
                        playlists.c.likes,
                        playlists.c.dislikes,
                        playlists.c.loves,
                        playlists.c.plays,
                    )
                )
            ),
            **{
                table.name: sorted(tuple(row) for row in conn.execute(select(table)))
                for table in (plays, reaction_changes, stats_hourly)
            },
        }


def rebuild(
    container: Container, batch_size: int, *, together: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    """Rebuild the counted read models with batches of ``batch_size``, together or one by one."""
    projectors = [
        p
        for p in container.projectors
        if isinstance(
            p, TracksProjector | PlaylistsProjector | ReactionsProjector | ListeningProjector
        )
    ]
    with container.read_engine.begin() as conn:
        for projector in projectors:
            for table in reversed(projector.tables):
                conn.execute(delete(table))
            conn.execute(
                delete(projection_positions).where(projection_positions.c.name == projector.name)
            )
    runners = [
        ProjectionRunner(
            projector,
            container.read_engine,
            container.app.recorder,
            container.app.mapper,
            batch_size=batch_size,
        )
        for projector in projectors
    ]
    if together:
        ProjectionGroup(runners).catch_up()
    else:
        for runner in runners:
            runner.catch_up()
    return counts(container)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["play", "set", "clear", "delete_track", "add_entry", "add_entry"]),
        st.integers(0, 3),
        st.integers(0, 4),
        st.sampled_from(["like", "dislike", "love"]),
    ),
    min_size=1,
    max_size=60,
)


@hypothesis_settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=ACTIONS)
# Entries added at 0, then at 0, 1, 2: a run that must push the first one down by 3.
@example(actions=[("add_entry", 0, position, "like") for position in (0, 0, 1, 2)])
def test_read_models_built_in_batches_equal_those_built_one_event_at_a_time(
    container: Container, actions: list[tuple[str, int, int, str]]
) -> None:
    owner = uuid4()
    now = datetime.now(UTC)
    track_list = [
        Track.upload(uuid4(), owner, FACTS, TrackMetadata(title=f"t{i}")) for i in range(3)
    ]
    playlist = Playlist.create(uuid4(), owner, f"p{random.random()}", "", "public")
    targets: list[tuple[str, UUID]] = [("track", t.id) for t in track_list] + [
        ("playlist", playlist.id)
    ]
    users = [uuid4() for _ in range(5)]
    reactions: dict[tuple[UUID, UUID], Reaction] = {}
    changed: list[Aggregate] = [*track_list, playlist]
    deleted: set[UUID] = set()
    for kind, target_index, user_index, reaction_kind in actions:
        target_kind, target_id = targets[target_index]
        user = users[user_index]
        if kind == "add_entry":
            size = len(playlist.entries)
            playlist.add_entry(
                owner, uuid4(), track_list[target_index % 3].id, min(user_index, size), 100
            )
        elif kind == "play":
            changed.append(Play.record(uuid4(), user, target_kind, target_id, now))
        elif kind == "delete_track":
            if target_kind == "track" and target_id not in deleted:
                deleted.add(target_id)
                track_list[target_index].delete(owner)
        else:
            reaction = reactions.get((user, target_id))
            if reaction is None:
                reaction = reactions[(user, target_id)] = Reaction.open(
                    user, target_kind, target_id
                )
                changed.append(reaction)
            (reaction.set if kind == "set" else reaction.clear)(reaction_kind, now)
    container.app.save(*changed)

    assert rebuild(container, batch_size=1000, together=True) == rebuild(container, batch_size=1)
