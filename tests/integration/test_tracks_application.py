"""Track commands, the tracks read model and blob cleanup, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, timedelta
from itertools import product
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import text

from application.errors import CorruptMedia, DuplicateTrack, UnsupportedMedia
from application.ports import BlobStore
from application.tracks import TrackFields, UploadedFile
from domain.errors import Gone, InvalidValue, NotPermitted
from infrastructure.bootstrap import Container
from projections.queries.reactions import NO_REACTIONS, MyReactionsRow
from tests.conftest import catch_up
from tests.support.audio import HOSTILE, audio, spool, unique_wav

PASSWORD = "correct horse battery"


def _user(container: Container, name: str) -> UUID:
    return container.app.register_user(name, f"{name}@example.com", PASSWORD).value


def _upload(
    container: Container,
    user: UUID,
    data: bytes,
    tmp_path: Path,
    filename: str = "upload.mp3",
    fields: TrackFields | None = None,
) -> UUID:
    upload = spool(tmp_path / "spool", data, filename)
    return container.app.upload_track(user, upload, fields or TrackFields()).value


def _blob_path(container: Container, sha256: str) -> Path:
    return container.settings.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256


def _blob_keys(container: Container) -> list[str]:
    return [blob.key for blob in container.blobs.list()]


@pytest.fixture
def alice(container: Container) -> UUID:
    """A registered user."""
    return _user(container, "alice")


def test_an_uploaded_track_is_stored_and_listed_with_facts_from_the_file(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    data = audio("tone.mp3")
    track_id = _upload(container, alice, data, tmp_path)
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    assert (row.title, row.artist, row.album, row.genre, row.year) == (
        "Fixture Tone",
        "ThePlaylist Test",
        "Fixtures",
        "Test",
        2026,
    )
    assert (row.mime_type, row.size_bytes, row.uploader_id) == ("audio/mpeg", len(data), alice)
    assert row.duration_ms == 3030 and row.sample_rate == 44100 and row.channels == 2
    assert row.counts.plays == row.counts.likes == 0
    assert _blob_path(container, row.sha256).read_bytes() == data


def test_given_fields_override_tags_and_a_missing_title_comes_from_the_file_name(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    untagged = _upload(container, alice, audio("tone.wav"), tmp_path, "C:\\music\\My Song.wav")
    given = _upload(
        container,
        alice,
        audio("tone.flac"),
        tmp_path,
        fields=TrackFields(title="  Given Title ", album="Given Album", year=1999),
    )
    catch_up(container)
    untagged_row = container.queries.tracks.get(untagged)
    given_row = container.queries.tracks.get(given)
    assert untagged_row is not None and given_row is not None
    assert (untagged_row.title, untagged_row.artist) == ("My Song", None)
    assert (given_row.title, given_row.artist, given_row.album, given_row.year) == (
        "Given Title",
        "ThePlaylist Test",
        "Given Album",
        1999,
    )


def test_bad_fields_are_refused_before_the_file_is_even_judged(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    head = container.app.head
    with pytest.raises(InvalidValue) as raised:
        _upload(container, alice, b"", tmp_path, fields=TrackFields(year=12))
    assert raised.value.field == "year"
    assert container.app.head == head


@pytest.mark.parametrize("case", ["an executable", "a truncated MP3"])
def test_a_refused_upload_stores_nothing(
    container: Container, alice: UUID, tmp_path: Path, case: str
) -> None:
    head = container.app.head
    with pytest.raises((UnsupportedMedia, CorruptMedia)):
        _upload(container, alice, HOSTILE[case][0], tmp_path)
    assert container.app.head == head
    assert _blob_keys(container) == []


def test_the_same_bytes_again_are_a_duplicate_of_the_first_track(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    first = _upload(container, alice, audio("tone.ogg"), tmp_path)
    bob = _user(container, "bob")
    head = container.app.head
    with pytest.raises(DuplicateTrack) as raised:
        _upload(container, bob, audio("tone.ogg"), tmp_path, "other-name.ogg")
    assert raised.value.existing_track_id == first
    assert container.app.head == head
    assert len(_blob_keys(container)) == 1


def test_eight_concurrent_uploads_of_one_file_make_exactly_one_track(
    container: Container, tmp_path: Path
) -> None:
    users = [_user(container, f"user{n}") for n in range(8)]
    uploads = [spool(tmp_path / f"spool{n}", audio("tone.m4a")) for n in range(8)]
    barrier = threading.Barrier(8)
    outcomes: list[object] = []
    lock = threading.Lock()

    def upload(user: UUID, file: UploadedFile) -> None:
        barrier.wait()
        try:
            result: object = container.app.upload_track(user, file, TrackFields()).value
        except DuplicateTrack as duplicate:
            result = duplicate
        with lock:
            outcomes.append(result)

    threads = [
        threading.Thread(target=upload, args=pair) for pair in zip(users, uploads, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    created = [o for o in outcomes if isinstance(o, UUID)]
    duplicates = [o for o in outcomes if isinstance(o, DuplicateTrack)]
    assert len(created) == 1 and len(duplicates) == 7
    assert {d.existing_track_id for d in duplicates} == set(created)
    catch_up(container)
    assert [t.id for t in container.queries.tracks.list(limit=20).items] == created
    assert len(_blob_keys(container)) == 1


def test_a_deleted_track_leaves_the_read_model_and_its_blob_is_removed_afterwards(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    track_id = _upload(container, alice, audio("tone.opus"), tmp_path)
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    container.app.delete_track(alice, track_id)
    assert _blob_path(container, row.sha256).exists()
    catch_up(container)
    assert container.queries.tracks.get(track_id) is None
    assert container.queries.tracks.list(limit=20).items == []
    assert not _blob_path(container, row.sha256).exists()
    with pytest.raises(Gone):
        container.app.delete_track(alice, track_id)


def test_bytes_uploaded_again_before_the_cleanup_ran_keep_their_blob(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    data = audio("tone.opus")
    first = _upload(container, alice, data, tmp_path)
    container.app.delete_track(alice, first)
    again = _upload(container, alice, data, tmp_path)
    catch_up(container)
    row = container.queries.tracks.get(again)
    assert row is not None and container.queries.tracks.get(first) is None
    assert _blob_path(container, row.sha256).read_bytes() == data
    # And once that track goes too, the blob goes with it.
    container.app.delete_track(alice, again)
    catch_up(container)
    assert _blob_keys(container) == []


class _CollectedWhileUploading:
    """A blob store through which garbage collection strikes between put and save."""

    def __init__(self, inner: BlobStore, strike: threading.Event) -> None:
        self._inner = inner
        self._strike = strike
        self.reclaim: object = None
        self.puts = 0

    def put(self, key: str, source: Path, size: int) -> None:
        self._inner.put(key, source, size)
        self.puts += 1
        if not self._strike.is_set():
            self._strike.set()
            assert callable(self.reclaim)
            assert self.reclaim(key) is True

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_an_upload_that_loses_its_blob_to_garbage_collection_stores_it_again(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    app = container.app
    collected = _CollectedWhileUploading(app._blobs, threading.Event())
    collected.reclaim = app.reclaim_blob
    app._blobs = collected  # type: ignore[assignment]
    try:
        track_id = _upload(container, alice, audio("tone.mp3"), tmp_path)
    finally:
        app._blobs = collected._inner
    assert collected.puts == 2
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    assert _blob_path(container, row.sha256).read_bytes() == audio("tone.mp3")


def test_garbage_collection_removes_old_orphans_only(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    live = _upload(container, alice, audio("tone.mp3"), tmp_path)
    old_orphan = spool(tmp_path / "spool", unique_wav(1))
    new_orphan = spool(tmp_path / "spool", unique_wav(2))
    for orphan in (old_orphan, new_orphan):
        container.blobs.put(orphan.sha256, orphan.path, orphan.size_bytes)
    long_ago = time.time() - 7200
    os.utime(_blob_path(container, old_orphan.sha256), (long_ago, long_ago))
    live_path = _blob_path(container, _sha(container, live))
    os.utime(live_path, (long_ago, long_ago))
    cutoff = container.clock.now() - timedelta(hours=1)
    dry = container.app.collect_garbage(cutoff, dry_run=True)
    assert (dry.examined, dry.removed, dry.referenced, dry.recent) == (3, 1, 1, 1)
    report = container.app.collect_garbage(cutoff)
    assert (report.removed, report.bytes_removed) == (1, old_orphan.size_bytes)
    assert sorted(_blob_keys(container)) == sorted([new_orphan.sha256, _sha(container, live)])


def _sha(container: Container, track_id: UUID) -> str:
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    return row.sha256


def test_only_the_uploader_may_edit_or_delete_a_track(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    track_id = _upload(container, alice, audio("tone.mp3"), tmp_path)
    bob = _user(container, "bob")
    with pytest.raises(NotPermitted):
        container.app.edit_track(bob, track_id, {"title": "Mine now"})
    with pytest.raises(NotPermitted):
        container.app.delete_track(bob, track_id)
    with pytest.raises(InvalidValue):
        container.app.edit_track(alice, track_id, {"title": None})
    with pytest.raises(InvalidValue):
        container.app.edit_track(alice, track_id, {"year": 123456})


def test_edits_show_in_the_read_model_and_in_search(
    container: Container, alice: UUID, tmp_path: Path
) -> None:
    track_id = _upload(container, alice, audio("tone.mp3"), tmp_path)
    container.app.edit_track(alice, track_id, {"title": "Żółw Blues", "artist": None})
    catch_up(container)
    row = container.queries.tracks.get(track_id)
    assert row is not None
    assert (row.title, row.artist, row.album) == ("Żółw Blues", None, "Fixtures")
    tracks = container.queries.tracks
    assert [t.id for t in tracks.list(q="ŻÓŁW").items] == [track_id]
    assert [t.id for t in tracks.list(q="blues fixtures").items] == [track_id]
    assert tracks.list(q="Fixture Tone").items == []
    assert tracks.list(q="ThePlaylist").items == []


@pytest.fixture
def catalog(container: Container, alice: UUID, tmp_path: Path) -> list[UUID]:
    """Seven short tracks, titled "Song 0".. "Song 6" (odd ones by bob)."""
    bob = _user(container, "bob")
    ids = []
    for n in range(7):
        uploader = bob if n % 2 else alice
        fields = TrackFields(title=f"Song {n}", artist="Percent 100%" if n == 3 else "Band")
        ids.append(_upload(container, uploader, unique_wav(100 + n), tmp_path, fields=fields))
    catch_up(container)
    return ids


def test_listings_filter_sort_and_search_literally(
    container: Container, alice: UUID, catalog: list[UUID]
) -> None:
    tracks = container.queries.tracks
    assert [t.id for t in tracks.list(limit=20).items] == catalog[::-1]
    assert [t.id for t in tracks.list(sort="title", limit=20).items] == catalog
    assert [t.id for t in tracks.list(uploader=alice, limit=20).items] == catalog[::-2]
    assert [t.id for t in tracks.list(q="100%").items] == [catalog[3]]
    assert tracks.list(q="_").items == []
    assert tracks.list(q="%").items == [tracks.get(catalog[3])]


def test_cursor_pages_stay_stable_while_tracks_are_added(
    container: Container, alice: UUID, catalog: list[UUID], tmp_path: Path
) -> None:
    tracks = container.queries.tracks
    page = tracks.list(limit=3)
    seen = [t.id for t in page.items]
    _upload(container, alice, unique_wav(999), tmp_path)
    catch_up(container)
    while page.next_cursor is not None:
        page = tracks.list(limit=3, cursor=page.next_cursor)
        seen += [t.id for t in page.items]
    assert seen == catalog[::-1]
    title_page = tracks.list(sort="title", limit=4)
    rest = tracks.list(sort="title", limit=4, cursor=title_page.next_cursor)
    assert [t.title for t in title_page.items + rest.items][:7] == [f"Song {n}" for n in range(7)]


def test_a_cursor_of_another_sort_or_a_forged_one_is_refused(
    container: Container, catalog: list[UUID]
) -> None:
    tracks = container.queries.tracks
    cursor = tracks.list(limit=2).next_cursor
    assert cursor is not None
    for sort, bad in (("plays", cursor), ("new", "not-a-cursor"), ("new", cursor[:-3])):
        with pytest.raises(InvalidValue) as raised:
            tracks.list(sort=sort, cursor=bad)  # type: ignore[arg-type]
        assert raised.value.field == "cursor"


def test_search_on_postgresql_is_backed_by_a_trigram_index(
    container: Container, catalog: list[UUID]
) -> None:
    if container.read_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no trigram index; the search scans (tested above)")
    with container.read_engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text("EXPLAIN SELECT id FROM tracks WHERE search_text LIKE '%song 3%'")
            )
        )
    assert "ix_tracks_search_trgm" in plan


def test_read_model_connections_on_postgresql_plan_for_values_and_speak_utc(
    container: Container, catalog: list[UUID]
) -> None:
    # A prepared search would otherwise get a generic plan, blind to its words;
    # in UTC, timestamps need no conversion on the way out.
    if container.read_engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans every statement for its values and keeps no zone")
    with container.read_engine.connect() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
        assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
    listed = container.queries.tracks.list(limit=1).items[0]
    assert listed.created_at.tzinfo is UTC


def test_every_shape_of_listing_pages_to_its_one_long_page_with_the_viewers_own_reactions(
    container: Container, alice: UUID, catalog: list[UUID]
) -> None:
    # Listings are statements built once per shape and shared by every caller:
    # a value of one call (a term, an uploader, a cursor, a viewer) must never
    # reach another.
    bob = _user(container, "bob2")
    asyncio.run(container.app.set_reaction(alice, "track", catalog[2], "like"))
    asyncio.run(container.app.set_reaction(bob, "track", catalog[2], "love"))
    asyncio.run(container.app.set_reaction(bob, "track", catalog[4], "dislike"))
    catch_up(container)
    reactions = {
        alice: {catalog[2]: MyReactionsRow(like=True)},
        bob: {catalog[2]: MyReactionsRow(love=True), catalog[4]: MyReactionsRow(dislike=True)},
    }
    texts = [f"song {i} " + ("percent 100%" if i == 3 else "band") for i in range(7)]
    tracks = container.queries.tracks
    shapes = product(
        (None, "song", "song band", "band 4", "100%"),
        (None, alice),
        ("new", "title", "likes"),
        (None, alice, bob),
    )
    for q, uploader, sort, viewer in shapes:
        query = {"q": q, "uploader": uploader, "sort": sort, "viewer_id": viewer}
        whole = tracks.list(limit=20, **query).items  # type: ignore[arg-type]
        paged, cursor = [], None
        while True:
            page = tracks.list(limit=2, cursor=cursor, **query)  # type: ignore[arg-type]
            paged += page.items
            assert len(paged) <= len(whole), query
            if (cursor := page.next_cursor) is None:
                break
        assert paged == whole, query
        expected = {
            catalog[i]
            for i in range(7)
            if (uploader is None or i % 2 == 0) and all(w in texts[i] for w in (q or "").split())
        }
        assert {t.id for t in whole} == expected, query
        mine = {t.id: t.mine for t in whole if t.mine not in (None, NO_REACTIONS)}
        wanted = reactions.get(viewer, {}) if viewer else {}
        assert mine == {k: v for k, v in wanted.items() if k in expected}, query
