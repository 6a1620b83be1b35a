"""Playlists through the application and their read model, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from application.errors import NotFound, PreconditionFailed
from domain.errors import AlreadyClaimed, InvalidValue, LimitReached, NoSuchPart, NotPermitted
from infrastructure.bootstrap import Container, build
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from tests.conftest import catch_up, make_settings
from tests.support.catalog import add_track, delete_track


def entries_of(container: Container, playlist_id: UUID) -> list[tuple[int, UUID, UUID]]:
    catch_up(container)
    return [
        (e.position, e.entry_id, e.track_id)
        for e in container.queries.playlists.entries(playlist_id)
    ]


def test_a_new_playlist_is_listed_with_zero_counts_and_version_one(container: Container) -> None:
    owner = uuid4()
    created = container.app.create_playlist(owner, "  Road trip ", "Songs\nfor the car", "public")
    catch_up(container)
    row = container.queries.playlists.visible(created.value.id, None)
    assert row is not None
    assert (row.name, row.description, row.visibility) == (
        "Road trip",
        "Songs\nfor the car",
        "public",
    )
    assert (row.owner_id, row.version, row.entry_count) == (owner, 1, 0)
    assert (row.counts.likes, row.counts.dislikes, row.counts.loves, row.counts.plays) == (0,) * 4


def test_names_are_unique_per_owner_regardless_of_case(container: Container) -> None:
    owner, other = uuid4(), uuid4()
    first = container.app.create_playlist(owner, "Chill", None, "public").value
    with pytest.raises(AlreadyClaimed):
        container.app.create_playlist(owner, "CHILL", None, "private")
    container.app.create_playlist(other, "chill", None, "public")
    container.app.change_playlist(owner, first.id, name="Chill out")
    container.app.create_playlist(owner, "chill", None, "public")
    with pytest.raises(AlreadyClaimed):
        container.app.change_playlist(owner, first.id, name="CHILL")
    container.app.change_playlist(owner, first.id, name="chill OUT")
    container.app.delete_playlist(owner, first.id)
    container.app.create_playlist(owner, "Chill Out", None, "public")


def test_parallel_creations_of_one_name_let_exactly_one_through(container: Container) -> None:
    owner = uuid4()
    barrier = threading.Barrier(12)

    def create(_: int) -> str:
        barrier.wait()
        try:
            container.app.create_playlist(owner, "Contested", None, "public")
        except AlreadyClaimed:
            return "taken"
        return "created"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(create, range(12)))
    assert outcomes.count("created") == 1


def test_entries_are_added_removed_and_moved_with_positions_0_to_n_minus_1(
    container: Container,
) -> None:
    owner = uuid4()
    a, b = add_track(container, owner), add_track(container, owner)
    playlist = container.app.create_playlist(owner, "Order", None, "public").value.id
    first = container.app.add_entry(owner, playlist, a).value
    second = container.app.add_entry(owner, playlist, b).value
    front = container.app.add_entry(owner, playlist, a, position=0).value
    assert (first.position, second.position, front.position) == (0, 1, 0)
    assert entries_of(container, playlist) == [
        (0, front.id, a),
        (1, first.id, a),
        (2, second.id, b),
    ]
    container.app.move_entry(owner, playlist, front.id, 2)
    assert entries_of(container, playlist) == [
        (0, first.id, a),
        (1, second.id, b),
        (2, front.id, a),
    ]
    container.app.move_entry(owner, playlist, front.id, 0)
    container.app.remove_entry(owner, playlist, first.id)
    assert entries_of(container, playlist) == [(0, front.id, a), (1, second.id, b)]
    row = container.queries.playlists.visible(playlist, None)
    assert row is not None and row.entry_count == 2 and row.version == 7
    with pytest.raises(NoSuchPart):
        container.app.remove_entry(owner, playlist, first.id)
    with pytest.raises(InvalidValue):
        container.app.move_entry(owner, playlist, front.id, 2)
    with pytest.raises(InvalidValue):
        container.app.add_entry(owner, playlist, a, position=3)


def test_only_live_tracks_can_be_added(container: Container) -> None:
    owner = uuid4()
    track = add_track(container, owner)
    playlist = container.app.create_playlist(owner, "Live only", None, "public").value.id
    delete_track(container, track, owner)
    with pytest.raises(NotFound):
        container.app.add_entry(owner, playlist, track)
    with pytest.raises(NotFound):
        container.app.add_entry(owner, playlist, uuid4())


def test_entries_of_a_deleted_track_stay_unavailable_until_removed(container: Container) -> None:
    owner, uploader = uuid4(), uuid4()
    kept, doomed = add_track(container, uploader), add_track(container, uploader)
    playlist = container.app.create_playlist(owner, "Survivors", None, "public").value.id
    container.app.add_entry(owner, playlist, kept)
    gone = container.app.add_entry(owner, playlist, doomed).value
    delete_track(container, doomed, uploader)
    catch_up(container)
    entries = container.queries.playlists.entries(playlist)
    assert [(e.track_id, e.unavailable) for e in entries] == [(kept, False), (doomed, True)]
    container.app.remove_entry(owner, playlist, gone.id)
    assert [t for _, _, t in entries_of(container, playlist)] == [kept]


def test_others_may_not_change_a_public_playlist_and_cannot_see_a_private_one(
    container: Container,
) -> None:
    owner, stranger = uuid4(), uuid4()
    track = add_track(container, owner)
    public = container.app.create_playlist(owner, "Open", None, "public").value.id
    private = container.app.create_playlist(owner, "Secret", None, "private").value.id
    with pytest.raises(NotPermitted):
        container.app.add_entry(stranger, public, track)
    with pytest.raises(NotPermitted):
        container.app.change_playlist(stranger, public, name="Taken over")
    with pytest.raises(NotFound):
        container.app.add_entry(stranger, private, track)
    with pytest.raises(NotFound):
        container.app.delete_playlist(stranger, private)
    catch_up(container)
    queries = container.queries.playlists
    assert queries.visible(private, stranger) is None and queries.visible(private, None) is None
    assert queries.visible(private, owner) is not None
    assert [p.id for p in queries.listed(owner_id=owner).items] == [public]
    assert {p.id for p in queries.owned_by(owner).items} == {public, private}


def test_a_stale_if_match_version_is_refused_and_changes_nothing(container: Container) -> None:
    owner = uuid4()
    track = add_track(container, owner)
    created = container.app.create_playlist(owner, "Versioned", None, "public").value
    renamed = container.app.change_playlist(
        owner, created.id, description="v2", expected_version=created.version
    ).value
    assert renamed.version == created.version + 1
    with pytest.raises(PreconditionFailed) as refused:
        container.app.add_entry(owner, created.id, track, expected_version=created.version)
    assert refused.value.current_version == renamed.version
    added = container.app.add_entry(owner, created.id, track, expected_version=renamed.version)
    assert added.value.version == renamed.version + 1
    catch_up(container)
    row = container.queries.playlists.visible(created.id, owner)
    assert row is not None and row.version == added.value.version and row.entry_count == 1


def test_a_playlist_holds_at_most_the_configured_number_of_entries(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(backend, tmp_path, request, playlist_max_entries=2)
    container = build(settings)
    try:
        owner = uuid4()
        track = add_track(container, owner)
        playlist = container.app.create_playlist(owner, "Small", None, "public").value.id
        container.app.add_entry(owner, playlist, track)
        container.app.add_entry(owner, playlist, track)
        with pytest.raises(LimitReached):
            container.app.add_entry(owner, playlist, track)
    finally:
        container.close()


def test_forty_parallel_additions_give_forty_entries(container: Container) -> None:
    owner = uuid4()
    tracks = [add_track(container, owner) for _ in range(4)]
    playlist = container.app.create_playlist(owner, "Crowded", None, "public").value.id
    barrier = threading.Barrier(40)

    def add(i: int) -> UUID:
        barrier.wait()
        return container.app.add_entry(owner, playlist, tracks[i % 4]).value.id

    with ThreadPoolExecutor(40) as pool:
        added = set(pool.map(add, range(40)))
    entries = entries_of(container, playlist)
    assert [position for position, _, _ in entries] == list(range(40))
    assert {entry_id for _, entry_id, _ in entries} == added
    row = container.queries.playlists.visible(playlist, owner)
    assert row is not None and row.entry_count == 40 and row.version == 41


def test_public_playlists_are_searched_sorted_and_paginated(container: Container) -> None:
    owner, fan = uuid4(), uuid4()
    ids = {
        name: container.app.create_playlist(owner, name, f"about {name}", "public").value.id
        for name in ("beta", "Alpha", "gamma 100%", "delta")
    }
    container.app.create_playlist(owner, "alpha private", None, "private")
    for name in ("beta", "delta"):
        asyncio.run(container.app.record_play(fan, "playlist", ids[name]))
    asyncio.run(container.app.record_play(fan, "playlist", ids["delta"]))
    catch_up(container)
    queries = container.queries.playlists

    def names(**kwargs: object) -> list[str]:
        return [p.name for p in queries.listed(owner_id=owner, **kwargs).items]  # type: ignore[arg-type]

    assert names(sort="name") == ["Alpha", "beta", "delta", "gamma 100%"]
    assert names(sort="plays")[:2] == ["delta", "beta"]
    assert names(q="ALPHA") == ["Alpha"]
    assert names(q="100%") == ["gamma 100%"]
    assert names(q="%") == ["gamma 100%"]
    assert names(q="about b") == ["beta"]
    seen: list[str] = []
    cursor = None
    while True:
        page = queries.listed(owner_id=owner, sort="new", cursor=cursor, limit=3)
        seen.extend(p.name for p in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["delta", "gamma 100%", "Alpha", "beta"]
    with pytest.raises(InvalidValue):
        queries.listed(cursor="not-a-cursor")


def test_each_caller_sees_their_own_playlists_and_reactions_through_shared_statements(
    container: Container,
) -> None:
    # Lookups and pages are statements built once per shape: the owner, viewer,
    # pattern and cursor of one call must never reach another.
    alice, bob = uuid4(), uuid4()
    mine = {
        owner: [
            container.app.create_playlist(owner, f"{who} {n}", None, visibility).value.id
            for n, visibility in enumerate(("public", "private", "public"))
        ]
        for owner, who in ((alice, "alice"), (bob, "bob"))
    }
    asyncio.run(container.app.set_reaction(bob, "playlist", mine[alice][0], "love"))
    catch_up(container)
    queries = container.queries.playlists
    for owner, who in ((alice, "alice"), (bob, "bob")):
        found = {None: mine[owner], who: mine[owner], f"{who} 1": mine[owner][1:2], "nobody": []}
        for q, expected in found.items():
            pages, cursor = [], None
            while True:
                page = queries.owned_by(owner, q=q, sort="name", cursor=cursor, limit=1)
                pages += [p.id for p in page.items]
                assert len(pages) <= 3
                if (cursor := page.next_cursor) is None:
                    break
            assert pages == expected, (who, q)
    private = mine[alice][1]
    assert queries.visible(private, alice) is not None
    assert queries.visible(private, bob) is None
    assert queries.visible(private, None) is None
    loved = {viewer: queries.visible(mine[alice][0], viewer) for viewer in (alice, bob, None)}
    assert [row.mine for row in loved.values() if row is not None] == [
        NO_REACTIONS,
        MyReactionsRow(love=True),
        None,
    ]
    assert set(queries.visible_many(mine[alice], alice)) == set(mine[alice])
    assert set(queries.visible_many(mine[alice], bob)) == {mine[alice][0], mine[alice][2]}


_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "add_at", "remove", "move"]), st.integers(0, 50)),
    min_size=1,
    max_size=12,
)


@hypothesis_settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_the_read_model_keeps_the_order_of_any_sequence_of_changes(
    container: Container, ops: list[tuple[str, int]]
) -> None:
    owner = uuid4()
    track = add_track(container, owner)
    playlist = container.app.create_playlist(owner, f"Model {uuid4()}", None, "public").value.id
    model: list[UUID] = []
    for op, n in ops:
        if op == "add":
            model.append(container.app.add_entry(owner, playlist, track).value.id)
        elif op == "add_at":
            position = n % (len(model) + 1)
            model.insert(
                position, container.app.add_entry(owner, playlist, track, position).value.id
            )
        elif op == "remove" and model:
            container.app.remove_entry(owner, playlist, model.pop(n % len(model)))
        elif op == "move" and model:
            entry = model.pop(n % len(model))
            to = (n // 3) % (len(model) + 1)
            model.insert(to, entry)
            container.app.move_entry(owner, playlist, entry, to)
    entries = entries_of(container, playlist)
    assert [(position, entry_id) for position, entry_id, _ in entries] == list(enumerate(model))
