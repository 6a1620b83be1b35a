"""Reactions through the application and their read models, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import literal, select

from application.errors import NotFound
from infrastructure.bootstrap import Container
from projections.queries.listening import RankBy
from projections.schema import reaction_changes
from tests.conftest import catch_up
from tests.support.catalog import add_track, delete_track

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def playlist_counts(container: Container, playlist_id: UUID) -> tuple[int, int, int, int]:
    catch_up(container)
    row = container.queries.playlists.visible(playlist_id, None)
    assert row is not None
    return row.counts.likes, row.counts.dislikes, row.counts.loves, row.counts.plays


def track_counts(container: Container, track_id: UUID) -> tuple[int, int, int, int]:
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    return row.counts.likes, row.counts.dislikes, row.counts.loves, row.counts.plays


def all_time(container: Container, kind: str, by: RankBy, target_id: UUID) -> int:
    """The target's count over all time, from the listening analytics tables."""
    catch_up(container)
    ranked = container.queries.listening.top(
        kind, by, EPOCH, datetime.now(UTC), 10, select(literal(target_id))
    )
    return ranked[0].count if ranked else 0


def test_like_and_dislike_exclude_each_other_and_love_goes_with_either(
    container: Container,
) -> None:
    owner, fan = uuid4(), uuid4()
    playlist = container.app.create_playlist(owner, "Loved", None, "public").value.id
    assert asyncio.run(container.app.set_reaction(fan, "playlist", playlist, "like")).value.like
    mine = asyncio.run(container.app.set_reaction(fan, "playlist", playlist, "love")).value
    assert (mine.like, mine.dislike, mine.love) == (True, False, True)
    mine = asyncio.run(container.app.set_reaction(fan, "playlist", playlist, "dislike")).value
    assert (mine.like, mine.dislike, mine.love) == (False, True, True)
    assert playlist_counts(container, playlist) == (0, 1, 1, 0)
    rows = container.queries.reactions.mine(fan, [playlist])
    assert (rows[playlist].like, rows[playlist].dislike, rows[playlist].love) == (False, True, True)
    asyncio.run(container.app.clear_reaction(fan, "playlist", playlist, "dislike"))
    assert playlist_counts(container, playlist) == (0, 0, 1, 0)


def test_setting_a_set_reaction_or_clearing_an_unset_one_appends_nothing(
    container: Container,
) -> None:
    fan = uuid4()
    track = add_track(container, uuid4())
    first = asyncio.run(container.app.set_reaction(fan, "track", track, "like"))
    again = asyncio.run(container.app.set_reaction(fan, "track", track, "like"))
    assert again.position == first.position == container.app.head
    cleared_unset = asyncio.run(container.app.clear_reaction(fan, "track", track, "love"))
    never = asyncio.run(container.app.clear_reaction(uuid4(), "track", track, "like"))
    assert cleared_unset.position == never.position == first.position


def test_reactions_on_deleted_unknown_or_hidden_targets_are_not_found(
    container: Container,
) -> None:
    owner, fan = uuid4(), uuid4()
    track = add_track(container, owner)
    private = container.app.create_playlist(owner, "Hidden", None, "private").value.id
    deleted = container.app.create_playlist(owner, "Gone", None, "public").value.id
    container.app.delete_playlist(owner, deleted)
    delete_track(container, track, owner)
    for kind, target in (
        ("track", track),
        ("track", uuid4()),
        ("playlist", private),
        ("playlist", deleted),
        ("playlist", uuid4()),
    ):
        with pytest.raises(NotFound):
            asyncio.run(container.app.set_reaction(fan, kind, target, "like"))
        with pytest.raises(NotFound):
            asyncio.run(container.app.clear_reaction(fan, kind, target, "like"))
    asyncio.run(container.app.set_reaction(owner, "playlist", private, "love"))


def test_forty_users_liking_one_track_in_parallel_give_forty_likes(container: Container) -> None:
    track = add_track(container, uuid4())
    owner = uuid4()
    playlist = container.app.create_playlist(owner, "Hot", None, "public").value.id
    fans = [uuid4() for _ in range(40)]
    barrier = threading.Barrier(40)

    def like(fan: UUID) -> None:
        barrier.wait()
        asyncio.run(container.app.set_reaction(fan, "track", track, "like"))
        asyncio.run(container.app.set_reaction(fan, "playlist", playlist, "like"))

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(like, fans))
    assert track_counts(container, track) == (40, 0, 0, 0)
    assert all_time(container, "track", "likes", track) == 40
    assert playlist_counts(container, playlist) == (40, 0, 0, 0)
    assert all(r.like for r in container.queries.reactions.mine(fans[0], [track]).values())


_KINDS = ("like", "dislike", "love")
_STEP = st.tuples(
    st.integers(0, 3),
    st.sampled_from(["track", "playlist"]),
    st.booleans(),
    st.sampled_from(_KINDS),
)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_STEP, max_size=25))
def test_any_sequence_of_reactions_gives_the_counts_of_a_model(
    container: Container, steps: list[tuple[int, str, bool, str]]
) -> None:
    owner = uuid4()
    users = [uuid4() for _ in range(4)]
    target = {
        "track": add_track(container, owner),
        "playlist": container.app.create_playlist(owner, "Model", None, "public").value.id,
    }
    model: dict[tuple[int, str], set[str]] = {}
    for user, kind, setting, reaction in steps:
        held = model.setdefault((user, kind), set())
        before = set(held)
        head = container.app.head
        if setting:
            held.add(reaction)
            held.discard({"like": "dislike", "dislike": "like"}.get(reaction, ""))
            mine = asyncio.run(
                container.app.set_reaction(users[user], kind, target[kind], reaction)
            )
        else:
            held.discard(reaction)
            mine = asyncio.run(
                container.app.clear_reaction(users[user], kind, target[kind], reaction)
            )
        assert {k for k in _KINDS if getattr(mine.value, k)} == held
        assert (mine.position > head) == (held != before)

    def expected(kind: str, reaction: str) -> int:
        return sum(reaction in held for (_, k), held in model.items() if k == kind)

    likes, dislikes, loves, _ = playlist_counts(container, target["playlist"])
    assert (likes, dislikes, loves) == tuple(expected("playlist", r) for r in _KINDS)
    likes, dislikes, loves, _ = track_counts(container, target["track"])
    assert (likes, dislikes, loves) == tuple(expected("track", r) for r in _KINDS)
    for kind in ("track", "playlist"):
        assert all_time(container, kind, "likes", target[kind]) == expected(kind, "like")
        assert all_time(container, kind, "loves", target[kind]) == expected(kind, "love")
        for user, user_id in enumerate(users):
            row = container.queries.reactions.mine(user_id, [target[kind]]).get(target[kind])
            held = {k for k in _KINDS if row is not None and getattr(row, k)}
            assert held == model.get((user, kind), set())
    with container.read_engine.connect() as conn:
        net = conn.execute(
            select(reaction_changes.c.kind, reaction_changes.c.delta).where(
                reaction_changes.c.target_id == target["track"]
            )
        ).all()
    for reaction in _KINDS:
        assert sum(d for k, d in net if k == reaction) == expected("track", reaction)
