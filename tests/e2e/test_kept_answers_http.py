"""Query answers kept until the read models change, over HTTP, on both backends.

The projectors run in the server. A change reaches kept answers through the
positions table: a NOTIFY on PostgreSQL, a read on each lookup on SQLite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from infrastructure.settings import Settings
from interfaces.http.combined import Combined
from projections.queries.answers import CurrentAnswers
from projections.queries.recent import RecentReads
from projections.schema import read_models_channel
from tests.e2e.test_playlists_http import User, new_track, sign_up
from tests.support.clients import container_of

API = "/api/v1"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The embedded default (commands, queries and projectors) over HTTP."""
    with TestClient(Combined(settings)) as test_client:
        yield test_client


def eventually(read: Callable[[], httpx.Response], done: Callable[[Any], bool]) -> Any:
    """The first body ``done`` accepts, asking again for up to 5 seconds."""
    deadline = time.monotonic() + 5
    while True:
        response = read()
        assert response.status_code == 200, response.text
        body = response.json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


def settled(client: TestClient) -> None:
    """Wait until every projector has caught up and the change feed is listening.

    Every projector moves its position for every batch, its own events or not,
    and each move changes the stamp: answers are kept from then on.
    """
    container = container_of(client)
    answers = container.answers
    assert answers is not None
    names = [projector.name for projector in container.projectors]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        caught_up = container.queries.positions.lowest(names) >= container.app.head
        stamp = answers.changes.current()
        time.sleep(0.05)
        if caught_up and stamp is not None and stamp == answers.changes.current():
            return
    raise AssertionError("the projectors did not settle")


def kept(client: TestClient, path: str, viewer: Any) -> bool:
    """Whether the query process keeps an answer to ``path`` for ``viewer`` now."""
    answers = container_of(client).answers
    assert answers is not None
    return answers.get((path, b"", viewer), answers.changes.current()) is not None


def test_a_kept_answer_gives_way_to_the_next_change(client: TestClient) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    track = new_track(alice)
    path = f"{API}/tracks/{track}"
    settled(client)
    first = bob.read(f"/tracks/{track}")
    assert first.status_code == 200, first.text
    assert first.json()["counts"]["likes"] == 0
    again = bob.send("GET", f"/tracks/{track}")
    assert again.content == first.content
    assert kept(client, path, bob.id)

    assert bob.send("PUT", f"/tracks/{track}/reactions/like").status_code == 200
    # Counts and the caller's reactions are two projections, each reaching the
    # kept answers as it commits.
    fresh = eventually(
        lambda: bob.send("GET", f"/tracks/{track}"),
        lambda b: b["counts"]["likes"] == 1 and b["my_reactions"]["like"],
    )
    assert fresh["counts"]["likes"] == 1
    assert fresh["my_reactions"]["like"] is True


def test_readers_during_concurrent_likes_end_on_the_exact_count(client: TestClient) -> None:
    owner = sign_up(client, "owner")
    track = new_track(owner)
    fans = [sign_up(client, f"fan{i}") for i in range(16)]
    readers = fans[:4]
    barrier = threading.Barrier(len(fans) + len(readers))
    done = threading.Event()

    def like(fan: User) -> int:
        barrier.wait()
        return fan.send("PUT", f"/tracks/{track}/reactions/like").status_code

    def read(reader: User) -> list[int]:
        barrier.wait()
        seen = []
        while not done.is_set():
            response = reader.send("GET", f"/tracks/{track}")
            assert response.status_code == 200, response.text
            seen.append(response.json()["counts"]["likes"])
        return seen

    with ThreadPoolExecutor(len(fans) + len(readers)) as pool:
        reading = [pool.submit(read, reader) for reader in readers]
        assert set(pool.map(like, fans)) == {200}
        done.set()
        assert all(all(0 <= n <= 16 for n in r.result()) for r in reading)
    final = eventually(
        lambda: owner.send("GET", f"/tracks/{track}"), lambda b: b["counts"]["likes"] == 16
    )
    assert final["counts"]["likes"] == 16
    settled(client)
    assert owner.send("GET", f"/tracks/{track}").json()["counts"]["likes"] == 16
    assert kept(client, f"{API}/tracks/{track}", owner.id)


def test_a_request_for_a_position_reads_the_read_models(client: TestClient) -> None:
    alice = sign_up(client, "alice")
    track = new_track(alice)
    assert alice.read(f"/tracks/{track}").json()["counts"]["plays"] == 0
    assert alice.send("GET", f"/tracks/{track}").json()["counts"]["plays"] == 0
    assert alice.send("POST", f"/tracks/{track}/plays").status_code == 201
    # At once, whether or not the change has reached the kept answers yet.
    assert alice.read(f"/tracks/{track}").json()["counts"]["plays"] == 1


def test_what_one_viewer_sees_is_never_served_to_another(client: TestClient) -> None:
    alice, bob = sign_up(client, "alice"), sign_up(client, "bob")
    track = new_track(alice)
    created = alice.send("POST", "/playlists", json={"name": "Secret", "visibility": "private"})
    assert created.status_code == 201, created.text
    playlist = created.json()["id"]
    assert alice.send("PUT", f"/tracks/{track}/reactions/love").status_code == 200
    bob.position = alice.position
    settled(client)

    assert alice.read(f"/playlists/{playlist}").status_code == 200
    assert alice.send("GET", f"/playlists/{playlist}").status_code == 200
    assert kept(client, f"{API}/playlists/{playlist}", alice.id)
    assert bob.send("GET", f"/playlists/{playlist}").status_code == 404
    assert client.get(f"{API}/playlists/{playlist}").status_code == 404

    mine = [alice.read(f"/tracks/{track}"), alice.send("GET", f"/tracks/{track}")]
    assert [r.json()["my_reactions"]["love"] for r in mine] == [True, True]
    theirs = [bob.read(f"/tracks/{track}"), bob.send("GET", f"/tracks/{track}")]
    assert [r.json()["my_reactions"]["love"] for r in theirs] == [False, False]
    nobody = client.get(f"{API}/tracks/{track}").json()
    assert "my_reactions" not in nobody and nobody["counts"]["loves"] == 1


def test_answers_are_not_kept_when_the_cache_is_off(settings: Settings) -> None:
    with TestClient(Combined(settings.model_copy(update={"query_cache_bytes": 0}))) as client:
        assert container_of(client).answers is None
        alice = sign_up(client, "alice")
        track = new_track(alice)
        assert alice.read(f"/tracks/{track}").json()["counts"]["likes"] == 0
        assert alice.send("PUT", f"/tracks/{track}/reactions/like").status_code == 200
        assert alice.read(f"/tracks/{track}").json()["counts"]["likes"] == 1


def test_the_change_feed_comes_back_after_its_connection_is_cut(
    client: TestClient, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite's stamp is read from the positions table, with no connection held")
    container = container_of(client)
    answers = container.answers
    assert answers is not None
    alice = sign_up(client, "alice")
    track = new_track(alice)
    path = f"{API}/tracks/{track}"
    settled(client)
    alice.read(f"/tracks/{track}")
    alice.send("GET", f"/tracks/{track}")
    before = answers.changes.current()
    assert isinstance(before, int) and kept(client, path, alice.id)

    channel = read_models_channel(container.settings.database_schema)
    with container.read_engine.connect() as conn:
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE query = :listen"
            ),
            {"listen": f'LISTEN "{channel}"'},
        ).scalar_one()
    assert cut == 1
    deadline = time.monotonic() + 10
    after = answers.changes.current()
    while not (isinstance(after, int) and after > before) and time.monotonic() < deadline:
        time.sleep(0.02)
        after = answers.changes.current()
    assert isinstance(after, int) and after > before
    # Whatever was kept before the cut may have missed a change: it is not served.
    assert not kept(client, path, alice.id)


def test_a_top_list_ranked_from_the_current_read_models_is_kept_past_the_ranking_grace(
    client: TestClient,
) -> None:
    now = [0.0]
    container = container_of(client)
    assert container.answers is not None
    container.recent_rankings = RecentReads(max_age=0.5, clock=lambda: now[0])
    container.answers = CurrentAnswers(container.answers.changes, 1 << 20, clock=lambda: now[0])
    alice = sign_up(client, "alice")
    track = new_track(alice)
    assert alice.send("POST", f"/tracks/{track}/plays").status_code == 201
    settled(client)
    path = f"{API}/stats/top-tracks"
    assert client.get(path).status_code == 200  # ranks; alice's answer reuses the ranking
    first = alice.send("GET", "/stats/top-tracks")
    assert [item["count"] for item in first.json()["items"]] == [1]
    now[0] += 10  # the ranking's half second is long gone; no change since
    assert kept(client, path, alice.id)
    assert alice.send("GET", "/stats/top-tracks").content == first.content
