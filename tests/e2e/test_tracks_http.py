"""The tracks API over HTTP, on both backends, with blobs on disk."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from infrastructure.settings import Settings
from interfaces.cli import cli
from interfaces.http.combined import Combined
from projections.queries.recent import RecentReads
from tests.conftest import catch_up, make_settings
from tests.support.audio import HOSTILE, REAL_AUDIO, audio, spool, unique_wav
from tests.support.clients import container_of

PASSWORD = "correct horse battery"
# Files over 1000 bytes stream from the blob's file; smaller answers come from memory.
MEMORY_THRESHOLD = 1000


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings with a small in-memory threshold, so both serving paths are exercised."""
    return make_settings(backend, tmp_path, request, stream_memory_threshold_bytes=MEMORY_THRESHOLD)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default over HTTP; tests run the projectors with ``catch_up``."""
    with TestClient(Combined(settings, run_projections=False)) as test_client:
        yield test_client


def sign_up(client: TestClient, username: str) -> dict[str, str]:
    """A new account's Authorization header."""
    response = client.post(
        "/api/v1/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    token = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def upload(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    filename: str = "song.mp3",
    **fields: str,
) -> Any:
    """POST /api/v1/tracks with the file declared as MP3, whatever it is."""
    return client.post(
        "/api/v1/tracks",
        files={"file": (filename, data, "audio/mpeg")},
        data=fields,
        headers=headers,
    )


def uploaded(client: TestClient, headers: dict[str, str], data: bytes, **fields: str) -> str:
    """The id of a successful upload, with the read models caught up."""
    response = upload(client, headers, data, **fields)
    assert response.status_code == 201, response.text
    assert int(response.headers["X-Event-Position"]) > 0
    catch_up(container_of(client))
    track_id: str = response.json()["id"]
    return track_id


def uploaded_tone(client: TestClient) -> dict[str, Any]:
    """Alice's FLAC, with an artist and a title outside ASCII, as the API shows it."""
    alice = sign_up(client, "alice")
    track_id = uploaded(client, alice, audio("tone.flac"), title="Tøne", artist="Ådä")
    body: dict[str, Any] = client.get(f"/api/v1/tracks/{track_id}").json()
    return body


def nothing_stored(client: TestClient, head: int) -> None:
    """No event appended since ``head``, no blob, no spooled upload left."""
    container = container_of(client)
    data_dir = container.settings.data_dir
    assert container.app.head == head
    assert list(container.blobs.list()) == []
    assert list((data_dir / "blobs" / ".incoming").iterdir()) == []
    spool = data_dir / "tmp" / "uploads"
    assert not spool.exists() or list(spool.iterdir()) == []


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    """A signed-in user's headers."""
    return sign_up(client, "alice")


def test_every_accepted_format_uploads_and_streams_back_byte_for_byte(
    client: TestClient, alice: dict[str, str]
) -> None:
    for name, mime_type in REAL_AUDIO.items():
        data = audio(name)
        track_id = uploaded(client, alice, data)
        track = client.get(f"/api/v1/tracks/{track_id}").json()
        assert (track["mime_type"], track["size_bytes"]) == (mime_type, len(data)), name
        stream = client.get(f"/api/v1/tracks/{track_id}/stream")
        assert stream.status_code == 200
        assert stream.content == data, name
        expected_type = "audio/ogg; codecs=opus" if mime_type == "audio/opus" else mime_type
        assert stream.headers["content-type"] == expected_type
        assert stream.headers["accept-ranges"] == "bytes"
        assert stream.headers["etag"] == f'"{track["sha256"]}"'


def test_a_flac_file_named_mp3_is_stored_and_served_as_flac(
    client: TestClient, alice: dict[str, str]
) -> None:
    track_id = uploaded(client, alice, audio("tone.flac"), title="Renamed")
    track = client.get(f"/api/v1/tracks/{track_id}").json()
    assert (track["mime_type"], track["title"], track["artist"]) == (
        "audio/flac",
        "Renamed",
        "ThePlaylist Test",
    )
    download = client.get(f"/api/v1/tracks/{track_id}/download")
    assert download.headers["content-type"] == "audio/flac"
    assert download.headers["content-disposition"] == (
        'attachment; filename="ThePlaylist Test - Renamed.flac"; '
        "filename*=UTF-8''ThePlaylist%20Test%20-%20Renamed.flac"
    )
    assert download.content == audio("tone.flac")


def test_hostile_files_are_refused_with_the_right_code_and_leave_nothing(
    client: TestClient, alice: dict[str, str]
) -> None:
    head = container_of(client).app.head
    for case, (data, code) in HOSTILE.items():
        response = upload(client, alice, data)
        assert response.status_code == (415 if code == "unsupported_media_type" else 422), case
        assert response.json()["error"]["code"] == code, case
        nothing_stored(client, head)


def test_a_file_over_the_size_limit_is_refused_while_streaming_and_leaves_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(backend, tmp_path, request, max_track_bytes=20_000)
    with TestClient(Combined(settings, run_projections=False)) as small:
        headers = sign_up(small, "alice")
        head = container_of(small).app.head
        response = upload(small, headers, audio("tone.mp3"))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        nothing_stored(small, head)
        assert upload(small, headers, audio("tone.mp3")[:15_000]).status_code == 422


def test_malformed_upload_requests_are_refused(client: TestClient, alice: dict[str, str]) -> None:
    head = container_of(client).app.head
    no_file = client.post("/api/v1/tracks", files={"title": (None, "x")}, headers=alice)
    assert no_file.status_code == 422
    assert no_file.json()["error"]["fields"][0]["field"] == "file"
    as_json = client.post("/api/v1/tracks", json={"file": "x"}, headers=alice)
    assert as_json.status_code == 415
    as_form = client.post("/api/v1/tracks", data={"title": "x"}, headers=alice)
    assert as_form.status_code == 415
    cut_short = client.post(
        "/api/v1/tracks",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
        b"\r\nabc",
        headers={**alice, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert cut_short.status_code == 422
    for year in ["last year", "2_000", "٢٠٢٠", "-1999"]:
        bad_year = upload(client, alice, audio("tone.mp3"), year=year)
        assert bad_year.status_code == 422, year
        assert bad_year.json()["error"]["fields"][0]["field"] == "year"
    anonymous = upload(client, {}, audio("tone.mp3"))
    assert anonymous.status_code == 401
    nothing_stored(client, head)


def test_eight_concurrent_uploads_of_one_file_give_exactly_one_201(client: TestClient) -> None:
    users = [sign_up(client, f"user{n}") for n in range(8)]
    barrier = threading.Barrier(8)
    responses: list[Any] = []
    lock = threading.Lock()

    def send(headers: dict[str, str]) -> None:
        barrier.wait()
        response = upload(client, headers, audio("tone.wav"))
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send, args=(headers,)) for headers in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert (error["code"], error["existing_track_id"]) == ("duplicate_track", winner)


@pytest.fixture
def track(client: TestClient, alice: dict[str, str]) -> dict[str, Any]:
    """An uploaded MP3 (49,049 bytes) as the API shows it."""
    track_id = uploaded(client, alice, audio("tone.mp3"))
    body: dict[str, Any] = client.get(f"/api/v1/tracks/{track_id}").json()
    return body


RANGES = [
    # Range header, status, Content-Range, first byte, end (exclusive)
    ("bytes=0-99", 206, "bytes 0-99/49049", 0, 100),
    ("bytes=49000-", 206, "bytes 49000-49048/49049", 49000, 49049),
    ("bytes=-10", 206, "bytes 49039-49048/49049", 49039, 49049),
    ("bytes=100-40000", 206, "bytes 100-40000/49049", 100, 40001),
    ("bytes=48000-99999", 206, "bytes 48000-49048/49049", 48000, 49049),
    ("bytes=0-1,5-6", 200, None, 0, 49049),
    ("bytes=9-5", 200, None, 0, 49049),
]


def test_range_requests_get_exactly_the_bytes_asked_for(
    client: TestClient, track: dict[str, Any]
) -> None:
    data = audio("tone.mp3")
    for header, status, content_range, start, end in RANGES:
        for kind in ("stream", "download"):
            response = client.get(f"/api/v1/tracks/{track['id']}/{kind}", headers={"Range": header})
            assert response.status_code == status, header
            assert response.headers.get("content-range") == content_range, header
            assert response.content == data[start:end], header
            assert int(response.headers["content-length"]) == end - start, header
            assert response.headers["content-type"] == "audio/mpeg", header


def test_unsatisfiable_ranges_get_416_with_the_size(
    client: TestClient, track: dict[str, Any]
) -> None:
    for header in ("bytes=49049-", "bytes=-0", "bytes=60000-70000"):
        response = client.get(f"/api/v1/tracks/{track['id']}/stream", headers={"Range": header})
        assert response.status_code == 416
        assert response.headers["content-range"] == "bytes */49049"
        assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_conditional_requests_use_the_content_hash_as_etag(
    client: TestClient, track: dict[str, Any]
) -> None:
    url = f"/api/v1/tracks/{track['id']}/stream"
    etag = f'"{track["sha256"]}"'
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert not_modified.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200
    stale_range = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale_range.status_code == 200
    fresh_range = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh_range.status_code == 206
    head = client.head(url, headers={"Range": "bytes=10-19"})
    assert (head.status_code, head.content) == (206, b"")
    assert head.headers["content-length"] == "10"
    small = client.get(url, headers={"Range": "bytes=0-9"})
    assert small.content == audio("tone.mp3")[:10]


def test_the_audio_routes_use_a_track_read_moments_ago_unless_asked_for_a_position(
    client: TestClient, alice: dict[str, str], track: dict[str, Any]
) -> None:
    now = [0.0]
    container = container_of(client)
    container.recent_tracks = RecentReads(max_age=0.5, clock=lambda: now[0])
    url = f"/api/v1/tracks/{track['id']}"

    def saved_as(headers: dict[str, str] | None = None) -> str:
        response = client.get(f"{url}/download", headers={"Range": "bytes=0-9", **(headers or {})})
        assert response.status_code == 206
        disposition: str = response.headers["content-disposition"]
        return disposition

    assert "Renamed" not in saved_as()
    edited = client.patch(url, json={"title": "Renamed"}, headers=alice)
    catch_up(container)
    position = {"X-Min-Position": edited.headers["X-Event-Position"]}
    assert "Renamed" not in saved_as()  # as read moments ago
    assert "Renamed" in saved_as(position)
    now[0] += 0.5
    assert "Renamed" in saved_as()
    deleted = client.delete(url, headers=alice)
    catch_up(container)
    after_delete = {"X-Min-Position": deleted.headers["X-Event-Position"]}
    assert client.get(f"{url}/stream", headers=after_delete).status_code == 404


def test_the_track_json_has_the_contract_shape(
    client: TestClient, alice: dict[str, str], track: dict[str, Any]
) -> None:
    expected = {
        "id", "title", "artist", "album", "genre", "year", "duration_ms", "bitrate",
        "sample_rate", "channels", "mime_type", "size_bytes", "sha256", "uploader_id",
        "created_at", "counts",
    }  # fmt: skip
    assert expected <= set(track)
    assert "my_reactions" not in track
    assert track["counts"] == {"likes": 0, "dislikes": 0, "loves": 0, "plays": 0}
    signed_in = client.get(f"/api/v1/tracks/{track['id']}", headers=alice).json()
    assert signed_in["my_reactions"] == {"like": False, "dislike": False, "love": False}


def test_only_the_uploader_may_edit_or_delete(
    client: TestClient, alice: dict[str, str], track: dict[str, Any]
) -> None:
    url = f"/api/v1/tracks/{track['id']}"
    bob = sign_up(client, "bob")
    assert client.patch(url, json={"title": "Bob's"}, headers=bob).status_code == 403
    assert client.delete(url, headers=bob).status_code == 403
    assert client.patch(url, json={"title": "Anon"}).status_code == 401
    assert client.delete(url).status_code == 401
    unknown = "/api/v1/tracks/00000000-0000-0000-0000-000000000001"
    assert client.delete(unknown, headers=alice).status_code == 404
    assert client.patch(url, json={}, headers=alice).status_code == 422
    assert client.patch(url, json={"bpm": 120}, headers=alice).status_code == 422
    assert client.patch(url, json={"title": ""}, headers=alice).status_code == 422

    edited = client.patch(url, json={"title": "New Title", "genre": None}, headers=alice)
    assert edited.status_code == 200
    position = edited.headers["X-Event-Position"]
    catch_up(container_of(client))
    after = client.get(url, headers={"X-Min-Position": position}).json()
    assert (after["title"], after["genre"], after["artist"]) == (
        "New Title",
        None,
        "ThePlaylist Test",
    )

    deleted = client.delete(url, headers=alice)
    assert deleted.status_code == 204
    catch_up(container_of(client))
    assert client.get(url).status_code == 404
    assert client.get(f"{url}/stream").status_code == 404
    assert client.get("/api/v1/tracks").json()["items"] == []
    assert list(container_of(client).blobs.list()) == []


def test_listings_paginate_search_and_cap_the_limit(
    client: TestClient, alice: dict[str, str]
) -> None:
    bob = sign_up(client, "bob")
    mine = [uploaded(client, alice, audio(name)) for name in ("tone.mp3", "tone.ogg")]
    theirs = uploaded(client, bob, audio("tone.wav"), title="Other Thing")
    first = client.get("/api/v1/tracks", params={"limit": 2}).json()
    assert [t["id"] for t in first["items"]] == [theirs, mine[1]]
    rest = client.get("/api/v1/tracks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert ([t["id"] for t in rest["items"]], rest["next_cursor"]) == ([mine[0]], None)
    searched = client.get("/api/v1/tracks", params={"q": "other"}).json()
    assert [t["id"] for t in searched["items"]] == [theirs]
    by_uploader = client.get("/api/v1/tracks", params={"uploader": alice_id(client, alice)})
    assert [t["id"] for t in by_uploader.json()["items"]] == mine[::-1]
    my_tracks = client.get("/api/v1/me/tracks", headers=bob).json()
    assert [t["id"] for t in my_tracks["items"]] == [theirs]
    assert client.get("/api/v1/me/tracks").status_code == 401
    too_many = client.get("/api/v1/tracks", params={"limit": 101})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["fields"][0]["field"] == "limit"
    assert client.get("/api/v1/tracks", params={"sort": "random"}).status_code == 422
    assert client.get("/api/v1/tracks", params={"cursor": "garbage"}).status_code == 422
    assert client.get("/api/v1/tracks", params={"sort": "title"}).status_code == 200


def alice_id(client: TestClient, headers: dict[str, str]) -> str:
    """The signed-in user's id."""
    user_id: str = client.get("/api/v1/auth/session", headers=headers).json()["user"]["id"]
    return user_id


def test_ready_reports_blob_storage_and_the_breaker(client: TestClient) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"]["blob_storage"] == "ok"
    assert body["storage_breaker"]["state"] == "closed"
    assert body["storage_breaker"]["store"] == "disk"


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    """Run ``theplaylist ARGS``; the logging it sets up on the runner's stderr is undone."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(cli, args, env=env)
    finally:
        root.handlers[:], root.level = handlers, level


def test_storage_gc_removes_old_orphans_and_leftovers_but_not_live_or_recent_blobs(
    client: TestClient, alice: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    live = client.get(f"/api/v1/tracks/{uploaded(client, alice, audio('tone.mp3'))}").json()
    container = container_of(client)
    orphans = {age: spool(tmp_path / "orphans", unique_wav(age)) for age in (0, 7200)}
    for orphan in orphans.values():
        container.blobs.put(orphan.sha256, orphan.path, orphan.size_bytes)
    blobs = settings.data_dir / "blobs"
    stale_spool = settings.data_dir / "tmp" / "uploads" / "upload-crashed"
    stale_incoming = blobs / ".incoming" / "half-written"
    for leftover in (stale_spool, stale_incoming):
        leftover.write_bytes(b"left by a crash")
    long_ago = time.time() - 7200
    for path in (
        blobs / orphans[7200].sha256[:2] / orphans[7200].sha256[2:4] / orphans[7200].sha256,
        blobs / live["sha256"][:2] / live["sha256"][2:4] / live["sha256"],
        stale_spool,
        stale_incoming,
    ):
        os.utime(path, (long_ago, long_ago))
    env = {
        "THEPLAYLIST_DATA_DIR": str(settings.data_dir),
        "THEPLAYLIST_LOG_FORMAT": "text",
        "THEPLAYLIST_STORAGE_GC_GRACE_SECONDS": "3600",
    }
    if settings.database_url is not None:
        env["THEPLAYLIST_DATABASE_URL"] = settings.database_url
        env["THEPLAYLIST_DATABASE_SCHEMA"] = settings.database_schema
    dry = run_cli(["storage", "gc", "--dry-run", "--json"], env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["removed"] == 1
    assert len(list(container.blobs.list())) == 3
    done = run_cli(["storage", "gc", "--json"], env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["examined"], report["referenced"], report["recent"], report["removed"]) == (
        3,
        1,
        1,
        1,
    )
    assert (report["incomplete_removed"], report["spooled_uploads_removed"]) == (1, 1)
    assert sorted(b.key for b in container.blobs.list()) == sorted(
        [live["sha256"], orphans[0].sha256]
    )
    assert not stale_spool.exists() and not stale_incoming.exists()
    assert client.get(f"/api/v1/tracks/{live['id']}/stream").content == audio("tone.mp3")


def test_the_api_docs_list_every_track_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/tracks"]) == {"get", "post"}
    assert set(paths["/api/v1/tracks/{track_id}"]) == {"get", "patch", "delete"}
    assert "multipart/form-data" in paths["/api/v1/tracks"]["post"]["requestBody"]["content"]
    assert {"/api/v1/me/tracks", "/api/v1/tracks/{track_id}/stream"} <= set(paths)
