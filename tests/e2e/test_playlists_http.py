"""Playlists, reactions, plays, playback, history and stats over HTTP, on both backends.

The projectors run in the server; reads wait for the commands' positions with
``X-Min-Position`` (which also checks that each route waits for the right
projections).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4
from xml.etree import ElementTree

import httpx
import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from projections.queries.answers import CurrentAnswers
from projections.queries.recent import RecentReads
from tests.support.catalog import add_track, delete_track
from tests.support.clients import container_of

API = "/api/v1"
PASSWORD = "correct horse battery"
XSPF = "{http://xspf.org/ns/0/}"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default (commands, queries and projectors) over HTTP."""
    with TestClient(Combined(settings)) as test_client:
        yield test_client


@dataclass
class User:
    """A signed-in user of the test, with what it last wrote."""

    client: TestClient
    id: UUID
    headers: dict[str, str]
    position: int = 0

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response: httpx.Response = self.client.request(
            method, f"{API}{path}", headers=headers, **kwargs
        )
        if "x-event-position" in response.headers:
            self.position = max(self.position, int(response.headers["x-event-position"]))
        return response

    def read(self, path: str, **kwargs: Any) -> httpx.Response:
        """A query that sees every write this user made."""
        headers = {"X-Min-Position": str(self.position), **kwargs.pop("headers", {})}
        return self.send("GET", path, headers=headers, **kwargs)


def sign_up(client: TestClient, name: str) -> User:
    """Register ``name`` and sign in with a bearer token."""
    registered = client.post(
        f"{API}/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    signed_in = client.post(f"{API}/auth/token", data={"username": name, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    return User(
        client,
        UUID(registered.json()["id"]),
        {"Authorization": f"Bearer {signed_in.json()['access_token']}"},
        int(signed_in.headers["x-event-position"]),
    )


def anonymous(client: TestClient, position: int) -> dict[str, str]:
    return {"X-Min-Position": str(position)}


def new_track(user: User, **kwargs: Any) -> UUID:
    track = add_track(container_of(user.client), user.id, **kwargs)
    user.position = container_of(user.client).app.head
    return track


def test_a_playlist_is_created_filled_reordered_and_changed_conditionally(
    client: TestClient,
) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    one = new_track(alice, title="One", artist="Ann", duration_ms=61_400)
    two = new_track(alice, title="Two", artist=None)
    created = alice.send("POST", "/playlists", json={"name": "Road trip", "visibility": "public"})
    assert created.status_code == 201, created.text
    playlist = created.json()["id"]
    assert created.json()["version"] == 1 and created.headers["etag"] == '"1"'
    first = alice.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(one)})
    second = alice.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(two)})
    front = alice.send(
        "POST", f"/playlists/{playlist}/entries", json={"track_id": str(two), "position": 0}
    )
    assert [r.status_code for r in (first, second, front)] == [201, 201, 201]
    assert front.json()["position"] == 0 and front.json()["version"] == 4
    moved = alice.send(
        "POST", f"/playlists/{playlist}/entries/{front.json()['id']}/move", json={"to_position": 2}
    )
    assert moved.status_code == 200 and moved.json()["version"] == 5
    detail = alice.read(f"/playlists/{playlist}")
    assert detail.status_code == 200 and detail.headers["etag"] == '"5"'
    body = detail.json()
    assert (body["name"], body["version"], body["owner_id"]) == ("Road trip", 5, str(alice.id))
    assert body["owner"]["username"] == "alice"
    assert [(e["position"], e["entry_id"]) for e in body["entries"]] == [
        (0, first.json()["id"]),
        (1, second.json()["id"]),
        (2, front.json()["id"]),
    ]
    assert body["entries"][0]["track"]["title"] == "One"
    assert body["entries"][0]["track"]["counts"] == {
        "likes": 0,
        "dislikes": 0,
        "loves": 0,
        "plays": 0,
    }
    assert body["my_reactions"] == {"like": False, "dislike": False, "love": False}

    stale = alice.send(
        "PATCH", f"/playlists/{playlist}", json={"name": "Late"}, headers={"If-Match": '"4"'}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["current_version"] == 5
    renamed = alice.send(
        "PATCH",
        f"/playlists/{playlist}",
        json={"name": "Road trip 2", "description": "Summer"},
        headers={"If-Match": "5"},
    )
    assert renamed.status_code == 200 and renamed.json()["version"] == 7
    removed = alice.send(
        "DELETE", f"/playlists/{playlist}/entries/{second.json()['id']}", headers={"If-Match": "7"}
    )
    assert removed.status_code == 200 and removed.json()["version"] == 8
    assert [e["track_id"] for e in alice.read(f"/playlists/{playlist}").json()["entries"]] == [
        str(one),
        str(two),
    ]

    assert bob.send("PATCH", f"/playlists/{playlist}", json={"name": "Mine"}).status_code == 403
    assert (
        bob.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(one)}).status_code
        == 403
    )
    taken = alice.send("POST", "/playlists", json={"name": "ROAD TRIP 2"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    assert bob.send("POST", "/playlists", json={"name": "Road trip 2"}).status_code == 201
    unknown_entry = alice.send("DELETE", f"/playlists/{playlist}/entries/{uuid4()}")
    assert unknown_entry.status_code == 404
    unknown_track = alice.send(
        "POST", f"/playlists/{playlist}/entries", json={"track_id": str(uuid4())}
    )
    assert unknown_track.status_code == 404
    for bad in (
        alice.send("POST", "/playlists", json={"name": "  "}),
        alice.send("POST", "/playlists", json={"name": "x", "visibility": "friends"}),
        alice.send("PATCH", f"/playlists/{playlist}", json={}),
        alice.send(
            "PATCH", f"/playlists/{playlist}", json={"name": "y"}, headers={"If-Match": "v"}
        ),
        alice.send(
            "POST", f"/playlists/{playlist}/entries", json={"track_id": str(one), "position": 9}
        ),
        alice.send(
            "POST",
            f"/playlists/{playlist}/entries/{first.json()['id']}/move",
            json={"to_position": -1},
        ),
    ):
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["code"] == "validation_error"
    assert client.post(f"{API}/playlists", json={"name": "anon"}).status_code == 401
    assert alice.send("DELETE", f"/playlists/{playlist}").status_code == 204
    assert alice.read(f"/playlists/{playlist}").status_code == 404


def test_a_private_playlist_is_not_found_by_anyone_but_its_owner(client: TestClient) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    track = new_track(alice)
    secret = alice.send("POST", "/playlists", json={"name": "Secret", "visibility": "private"})
    playlist = secret.json()["id"]
    alice.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(track)})
    public = alice.send("POST", "/playlists", json={"name": "Open"}).json()["id"]
    bob.position = alice.position
    for response in (
        bob.read(f"/playlists/{playlist}"),
        bob.read(f"/playlists/{playlist}/export.m3u"),
        bob.read(f"/playlists/{playlist}/export.xspf"),
        bob.send("PUT", f"/playlists/{playlist}/reactions/like"),
        bob.send("POST", f"/playlists/{playlist}/plays"),
        bob.send("PATCH", f"/playlists/{playlist}", json={"name": "Found"}),
        bob.send("POST", "/playback", json={"track_id": str(track), "playlist_id": playlist}),
        client.get(f"{API}/playlists/{playlist}", headers=anonymous(client, alice.position)),
    ):
        assert response.status_code == 404, response.text
    assert alice.read(f"/playlists/{playlist}").status_code == 200
    listed = bob.read("/playlists", params={"owner": str(alice.id)}).json()["items"]
    assert [p["id"] for p in listed] == [public]
    assert [p["id"] for p in alice.read("/playlists").json()["items"]] == [public]
    mine = alice.read("/me/playlists").json()["items"]
    assert {p["id"] for p in mine} == {playlist, public}
    assert bob.read("/me/playlists").json()["items"] == []
    made_public = alice.send("PATCH", f"/playlists/{playlist}", json={"visibility": "public"})
    assert made_public.status_code == 200
    bob.position = alice.position
    assert bob.read(f"/playlists/{playlist}").status_code == 200


def test_exports_point_at_absolute_stream_urls_and_skip_deleted_tracks(
    client: TestClient,
) -> None:
    alice = sign_up(client, "alice")
    kept = new_track(alice, title="Kept <1>", artist="Ann & Co", duration_ms=183_600)
    doomed = new_track(alice, title="Doomed")
    untitled = new_track(alice, title="Solo", artist=None, duration_ms=1_000)
    playlist = alice.send(
        "POST", "/playlists", json={"name": "Export me", "description": "for players"}
    ).json()["id"]
    entries = [
        alice.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(t)}).json()
        for t in (kept, doomed, untitled)
    ]
    delete_track(container_of(client), doomed, alice.id)
    alice.position = container_of(client).app.head
    detail = alice.read(f"/playlists/{playlist}").json()
    assert [(e["entry_id"], e["unavailable"], e["track"] is None) for e in detail["entries"]] == [
        (entries[0]["id"], False, False),
        (entries[1]["id"], True, True),
        (entries[2]["id"], False, False),
    ]

    m3u = alice.read(f"/playlists/{playlist}/export.m3u")
    assert m3u.status_code == 200
    assert m3u.headers["content-type"].startswith("audio/x-mpegurl")
    assert m3u.text.splitlines() == [
        "#EXTM3U",
        "#PLAYLIST:Export me",
        "#EXTINF:184,Ann & Co - Kept <1>",
        f"http://testserver/api/v1/tracks/{kept}/stream",
        "#EXTINF:1,Solo",
        f"http://testserver/api/v1/tracks/{untitled}/stream",
    ]

    response = alice.read(f"/playlists/{playlist}/export.xspf")
    assert response.headers["content-type"].startswith("application/xspf+xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{XSPF}playlist" and root.attrib["version"] == "1"
    assert root.findtext(f"{XSPF}title") == "Export me"
    assert root.findtext(f"{XSPF}creator") == "alice"
    assert root.findtext(f"{XSPF}annotation") == "for players"
    tracks = root.findall(f"{XSPF}trackList/{XSPF}track")
    assert [t.findtext(f"{XSPF}location") for t in tracks] == [
        f"http://testserver/api/v1/tracks/{kept}/stream",
        f"http://testserver/api/v1/tracks/{untitled}/stream",
    ]
    assert [child.tag.removeprefix(XSPF) for child in tracks[0]] == [
        "location",
        "identifier",
        "title",
        "creator",
        "duration",
    ]
    assert tracks[0].findtext(f"{XSPF}title") == "Kept <1>"
    assert tracks[0].findtext(f"{XSPF}duration") == "183600"


def test_reactions_set_and_clear_idempotently_and_show_in_counts(client: TestClient) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    track = new_track(alice)
    playlist = alice.send("POST", "/playlists", json={"name": "Liked"}).json()["id"]
    liked = bob.send("PUT", f"/tracks/{track}/reactions/like")
    assert liked.status_code == 200
    assert liked.json() == {
        "id": str(track),
        "my_reactions": {"like": True, "dislike": False, "love": False},
    }
    again = bob.send("PUT", f"/tracks/{track}/reactions/like")
    assert again.headers["x-event-position"] == liked.headers["x-event-position"]
    flipped = bob.send("PUT", f"/tracks/{track}/reactions/dislike").json()["my_reactions"]
    assert flipped == {"like": False, "dislike": True, "love": False}
    bob.send("PUT", f"/tracks/{track}/reactions/love")
    alice.send("PUT", f"/tracks/{track}/reactions/like")
    bob.send("PUT", f"/playlists/{playlist}/reactions/love")
    cleared = bob.send("DELETE", f"/playlists/{playlist}/reactions/love")
    assert cleared.status_code == 200 and cleared.json()["my_reactions"]["love"] is False
    unset = bob.send("DELETE", f"/playlists/{playlist}/reactions/like")
    assert unset.headers["x-event-position"] == cleared.headers["x-event-position"]
    bob.send("PUT", f"/playlists/{playlist}/reactions/like")
    alice.position = bob.position = max(alice.position, bob.position)

    seen_by_bob = bob.read(f"/tracks/{track}").json()
    assert seen_by_bob["counts"] == {"likes": 1, "dislikes": 1, "loves": 1, "plays": 0}
    assert seen_by_bob["my_reactions"] == {"like": False, "dislike": True, "love": True}
    detail = bob.read(f"/playlists/{playlist}").json()
    assert detail["counts"]["likes"] == 1 and detail["counts"]["loves"] == 0
    assert detail["my_reactions"]["like"] is True
    assert "my_reactions" not in client.get(f"{API}/playlists/{playlist}").json()
    assert bob.send("PUT", f"/tracks/{uuid4()}/reactions/like").status_code == 404
    assert bob.send("PUT", f"/tracks/{track}/reactions/meh").status_code == 422
    assert client.put(f"{API}/tracks/{track}/reactions/like").status_code == 401


def test_plays_playback_history_and_stats(client: TestClient) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    hit = new_track(alice, title="Hit", duration_ms=180_000)
    miss = new_track(alice, title="Miss")
    playlist = alice.send("POST", "/playlists", json={"name": "Charts"}).json()["id"]
    alice.send("POST", f"/playlists/{playlist}/entries", json={"track_id": str(hit)})
    for _ in range(3):
        assert bob.send("POST", f"/tracks/{hit}/plays").status_code == 201
    assert bob.send("POST", f"/tracks/{miss}/plays").status_code == 201
    assert bob.send("POST", f"/playlists/{playlist}/plays").status_code == 201
    assert bob.send("POST", f"/tracks/{uuid4()}/plays").status_code == 404

    started = bob.send("POST", "/playback", json={"track_id": str(hit), "playlist_id": playlist})
    assert started.status_code == 201
    session = started.json()["id"]
    assert started.json()["threshold_ms"] == 90_000
    paused = bob.send(
        "POST", f"/playback/{session}/events", json={"action": "pause", "position_ms": 50_000}
    )
    assert paused.json()["heard_ms"] == 50_000 and paused.json()["counted"] is False
    bob.send(
        "POST", f"/playback/{session}/events", json={"action": "resume", "position_ms": 50_000}
    )
    counted = bob.send(
        "POST", f"/playback/{session}/events", json={"action": "stop", "position_ms": 95_000}
    )
    assert counted.json()["counted"] is True and counted.json()["ended"] == "stopped"
    assert (
        bob.send(
            "POST", f"/playback/{session}/events", json={"action": "resume", "position_ms": 0}
        ).status_code
        == 409
    )
    assert (
        alice.send(
            "POST", f"/playback/{session}/events", json={"action": "stop", "position_ms": 0}
        ).status_code
        == 404
    )
    other_session = bob.send("POST", "/playback", json={"track_id": str(hit)}).json()["id"]
    seek_without_target = bob.send(
        "POST",
        f"/playback/{other_session}/events",
        json={"action": "seek", "position_ms": 10},
    )
    assert seek_without_target.status_code == 422

    history = bob.read("/me/history", params={"limit": 4})
    assert history.status_code == 200
    page = history.json()
    assert page["items"][0]["track"]["title"] == "Hit"
    assert page["items"][0]["source"] == "session"
    assert page["items"][0]["from_playlist_id"] == playlist
    assert page["items"][1]["playlist"]["id"] == playlist
    rest = bob.read("/me/history", params={"cursor": page["next_cursor"], "limit": 4}).json()
    assert len(page["items"]) + len(rest["items"]) == 6 and rest["next_cursor"] is None
    assert alice.read("/me/history").json()["items"] == []
    assert client.get(f"{API}/me/history").status_code == 401

    top = alice.read("/stats/top-tracks", params={"period": "day", "by": "plays"}).json()
    assert [(i["track"]["id"], i["count"]) for i in top["items"]] == [(str(hit), 4), (str(miss), 1)]
    top_playlists = alice.read("/stats/top-playlists", params={"period": "all"}).json()
    assert [(i["playlist"]["id"], i["count"]) for i in top_playlists["items"]] == [(playlist, 1)]
    buckets = alice.read(f"/stats/tracks/{hit}/plays", params={"bucket": "hour"}).json()
    assert buckets["total"] == 4 and len(buckets["items"]) in (720, 721)
    assert buckets["items"][-1]["count"] + buckets["items"][-2]["count"] == 4
    daily = alice.read(f"/stats/tracks/{hit}/plays").json()
    assert daily["bucket"] == "day" and daily["total"] == 4
    assert daily["track_id"] == str(hit)
    for bad in (
        alice.read("/stats/top-tracks", params={"period": "decade"}),
        alice.read("/stats/top-tracks", params={"limit": 1000}),
        alice.read(f"/stats/tracks/{hit}/plays", params={"from": "2026-01-02", "to": "2026-01-01"}),
    ):
        assert bad.status_code == 422, bad.text
    assert alice.read(f"/stats/tracks/{uuid4()}/plays").status_code == 404


def test_top_lists_use_a_ranking_of_moments_ago_unless_asked_for_a_position(
    client: TestClient,
) -> None:
    now = [0.0]
    container = container_of(client)
    container.recent_rankings = RecentReads(max_age=0.5, clock=lambda: now[0])
    # Answers made from a ranking of moments ago are kept no longer than it.
    assert container.answers is not None
    container.answers = CurrentAnswers(container.answers.changes, 1 << 20, clock=lambda: now[0])
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    hit = new_track(alice, title="Hit")

    def plays(user: User, headers: dict[str, str] | None = None) -> list[int]:
        top = user.send("GET", "/stats/top-tracks", params={"period": "day"}, headers=headers or {})
        assert top.status_code == 200, top.text
        return [item["count"] for item in top.json()["items"]]

    assert bob.send("POST", f"/tracks/{hit}/plays").status_code == 201
    assert plays(bob, anonymous(client, bob.position)) == [1]
    assert bob.send("POST", f"/tracks/{hit}/plays").status_code == 201
    # Projected (history reads the same projection), yet not ranked again so soon...
    assert len(bob.read("/me/history").json()["items"]) == 2
    assert plays(alice) == [1]
    now[0] += 0.5
    # ...until the ranking is half a second old; a position is always honoured.
    assert plays(alice) == [2]
    assert bob.send("POST", f"/tracks/{hit}/plays").status_code == 201
    assert plays(alice, anonymous(client, bob.position)) == [3]


def test_forty_users_liking_one_track_over_http_give_forty_likes(client: TestClient) -> None:
    owner = sign_up(client, "owner")
    track = new_track(owner)
    fans = [sign_up(client, f"fan{i}") for i in range(40)]
    barrier = threading.Barrier(40)

    def like(fan: User) -> int:
        barrier.wait()
        return fan.send("PUT", f"/tracks/{track}/reactions/like").status_code

    with ThreadPoolExecutor(40) as pool:
        assert set(pool.map(like, fans)) == {200}
    owner.position = max(fan.position for fan in fans)
    assert owner.read(f"/tracks/{track}").json()["counts"]["likes"] == 40
