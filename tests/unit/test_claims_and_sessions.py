"""Invariants of unique claims and of sessions with rotating refresh tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.claims import UniqueClaim
from domain.errors import AlreadyClaimed, RefreshTokenReused, SessionRevoked
from domain.sessions import Session

OWNERS = [UUID(int=1), UUID(int=2), UUID(int=3)]
owners = st.sampled_from(OWNERS)
START = datetime(2030, 1, 1, tzinfo=UTC)


def _replayed(events: Sequence[Any]) -> Any:
    aggregate = None
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


# --- unique claims -------------------------------------------------------------------------


@given(st.sampled_from(["username", "email"]), st.text(max_size=40))
def test_a_claims_id_depends_only_on_its_kind_and_key(kind: str, key: str) -> None:
    assert UniqueClaim.id_for(kind, key) == UniqueClaim.id_for(kind, key)
    other_kind = "email" if kind == "username" else "username"
    assert UniqueClaim.id_for(kind, key) != UniqueClaim.id_for(other_kind, key)
    assert UniqueClaim.id_for(kind, key) != UniqueClaim.id_for(kind, key + "x")


@given(st.text(max_size=40), owners, owners)
def test_two_starts_of_one_key_are_the_same_aggregate_so_the_store_lets_one_in(
    key: str, first: UUID, second: UUID
) -> None:
    a = UniqueClaim.start("username", key, first)
    b = UniqueClaim.start("username", key, second)
    # Same id and same version: the event store refuses the second save.
    assert (a.id, a.version) == (b.id, b.version)


claim_steps = st.lists(st.tuples(st.sampled_from(["claim", "release"]), owners), max_size=30)


@given(owners, claim_steps)
def test_a_claim_has_at_most_one_holder_and_only_the_holder_releases_it(
    first: UUID, steps: list[tuple[str, UUID]]
) -> None:
    claim = UniqueClaim.start("username", "alice", first)
    holder: UUID | None = first
    recorded = 1
    for action, owner in steps:
        if action == "claim":
            if holder is not None and holder != owner:
                with pytest.raises(AlreadyClaimed) as taken:
                    claim.claim(owner)
                assert taken.value.owner_id == holder and taken.value.kind == "username"
            else:
                claim.claim(owner)
                recorded += holder is None
                holder = owner
        else:
            claim.release(owner)
            if holder == owner:
                recorded += 1
                holder = None
        assert claim.owner_id == holder
        assert claim.is_free == (holder is None)
    events = claim.collect_events()
    assert len(events) == recorded
    assert _replayed(events).owner_id == holder


def test_a_released_key_can_be_claimed_by_someone_else() -> None:
    claim = UniqueClaim.start("email", "a@example.com", OWNERS[0])
    claim.release(OWNERS[0])
    claim.claim(OWNERS[1])
    events = claim.collect_events()
    assert [type(e) for e in events] == [
        UniqueClaim.Claimed,
        UniqueClaim.Released,
        UniqueClaim.ClaimedAgain,
    ]
    assert _replayed(events).owner_id == OWNERS[1]


# --- sessions ------------------------------------------------------------------------------


def _open(ttl: timedelta = timedelta(days=30)) -> Session:
    return Session.open(uuid4(), uuid4(), "hash-0", START + ttl, "tests")


session_steps = st.lists(
    st.one_of(
        st.just(("rotate_current", 0)),
        st.tuples(st.just("reuse"), st.integers(min_value=0, max_value=50)),
        st.just(("unknown", 0)),
        st.just(("revoke", 0)),
    ),
    max_size=25,
)


@given(session_steps)
def test_rotation_accepts_only_the_current_token_and_any_reuse_revokes_the_session(
    steps: list[tuple[str, int]],
) -> None:
    session = _open()
    current = "hash-0"
    used: list[str] = []
    revoked = False
    now = START
    for counter, (action, pick) in enumerate(steps, start=1):
        now += timedelta(minutes=1)
        if action == "rotate_current":
            new = f"hash-{counter}"
            if revoked:
                with pytest.raises(SessionRevoked):
                    session.rotate(current, new, now)
            else:
                session.rotate(current, new, now)
                used.append(current)
                current = new
        elif action == "reuse" and used:
            with pytest.raises(RefreshTokenReused):
                session.rotate(used[pick % len(used)], f"hash-{counter}", now)
            revoked = True
        elif action == "unknown":
            with pytest.raises((SessionRevoked, RefreshTokenReused)):
                session.rotate(f"never-issued-{counter}", f"hash-{counter}", now)
        elif action == "revoke":
            session.revoke("logout")
            revoked = True
        assert session.revoked == revoked
        assert session.is_open(now) == (not revoked)
        assert session.token_hash == current
    events = session.collect_events()
    assert sum(isinstance(e, Session.Revoked) for e in events) == (1 if revoked else 0)
    replayed = _replayed(events)
    assert (replayed.token_hash, replayed.used_hashes, replayed.revoked) == (
        current,
        used,
        revoked,
    )


def test_reusing_a_rotated_token_revokes_even_the_newest_token() -> None:
    session = _open()
    session.rotate("hash-0", "hash-1", START)
    session.rotate("hash-1", "hash-2", START)
    with pytest.raises(RefreshTokenReused):
        session.rotate("hash-0", "hash-3", START)
    with pytest.raises(SessionRevoked):
        session.rotate("hash-2", "hash-3", START)
    revocations = [e for e in session.collect_events() if isinstance(e, Session.Revoked)]
    assert [e.reason for e in revocations] == ["refresh_token_reused"]


@given(st.integers(min_value=0, max_value=10_000))
def test_an_expired_session_refuses_even_its_current_token(seconds_after: int) -> None:
    session = _open(timedelta(hours=1))
    expiry = START + timedelta(hours=1)
    assert session.is_open(expiry - timedelta(seconds=1))
    with pytest.raises(SessionRevoked):
        session.rotate("hash-0", "hash-1", expiry + timedelta(seconds=seconds_after))
    assert [type(e) for e in session.collect_events()] == [Session.Opened]


@given(st.integers(min_value=1, max_value=5))
def test_revoking_a_revoked_session_records_nothing(times: int) -> None:
    session = _open()
    for _ in range(times):
        session.revoke("logout")
    assert [type(e) for e in session.collect_events()] == [Session.Opened, Session.Revoked]
