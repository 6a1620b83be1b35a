"""Answers kept until the read models change: stamps, ages and the byte bound."""

from __future__ import annotations

from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.queries.answers import ENTRY_OVERHEAD_BYTES, CurrentAnswers


class Counter:
    """A change feed whose stamp the test moves by hand (as NOTIFYs would)."""

    blocking = False

    def __init__(self) -> None:
        self.stamp: int | None = 1

    def current(self) -> Hashable | None:
        return self.stamp

    def close(self) -> None:
        self.stamp = None


def answers(
    capacity: int = 1 << 20, max_age: float = 30.0
) -> tuple[CurrentAnswers[str, bytes], Counter, list[float]]:
    now = [0.0]
    changes = Counter()
    return CurrentAnswers(changes, capacity, max_age, clock=lambda: now[0]), changes, now


def test_an_answer_is_served_until_the_read_models_change() -> None:
    kept, changes, _ = answers()
    assert kept.get("top", 1) is None  # a request looks first, then renders and keeps
    kept.put("top", 1, b"old", 3)
    assert kept.get("top", 1) == b"old"
    changes.stamp = 2
    assert kept.get("top", 2) is None
    assert len(kept) == 0 and kept.size_bytes == 0  # freed at once, not left to age


def test_an_answer_made_before_a_change_already_seen_is_not_kept() -> None:
    kept, _, _ = answers()
    assert kept.get("a", 1) is None
    # Another request saw stamp 2 while this one was still reading at stamp 1.
    assert kept.get("b", 2) is None
    kept.put("a", 1, b"maybe stale", 11)
    assert kept.get("a", 2) is None
    # A lookup still holding the older counter neither finds nor wipes anything.
    kept.put("b", 2, b"fresh", 5)
    assert kept.get("b", 1) is None
    assert kept.get("b", 2) == b"fresh"


def test_nothing_is_kept_or_served_while_the_stamp_is_unknown() -> None:
    kept, _, _ = answers()
    kept.put("a", None, b"x", 1)
    assert kept.get("a", None) is None
    kept.get("a", 1)
    kept.put("a", 1, b"x", 1)
    assert kept.get("a", None) is None
    assert kept.get("a", 1) == b"x"


def test_answers_age_out_and_a_shorter_life_is_honoured() -> None:
    kept, _, now = answers(max_age=30.0)
    kept.get("week", 1)
    kept.put("week", 1, b"long", 4)
    kept.put("ranked", 1, b"short", 5, max_age=0.5)
    # Lives are cut by up to a quarter, so that entries made together expire apart.
    now[0] = 0.37
    assert kept.get("ranked", 1) == b"short"
    now[0] = 0.5
    assert kept.get("ranked", 1) is None
    assert kept.get("week", 1) == b"long"
    now[0] = 30.0
    assert kept.get("week", 1) is None


def test_the_byte_bound_drops_the_least_recently_used() -> None:
    weight = 100 + ENTRY_OVERHEAD_BYTES
    kept, _, _ = answers(capacity=3 * weight)
    kept.get("a", 1)
    for key in "abc":
        kept.put(key, 1, key.encode() * 100, 100)
    assert kept.get("a", 1) is not None  # a is now the most recent
    kept.put("d", 1, b"d" * 100, 100)
    assert kept.get("b", 1) is None
    assert [k for k in "acd" if kept.get(k, 1) is not None] == ["a", "c", "d"]
    assert kept.size_bytes == 3 * weight
    kept.put("huge", 1, b"h" * 4 * weight, 4 * weight)
    assert kept.get("huge", 1) is None and len(kept) == 3


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("change")),
            st.tuples(st.just("get"), st.sampled_from("abc")),
            st.tuples(st.just("render"), st.sampled_from("abc"), st.booleans()),
        ),
        max_size=40,
    )
)
def test_a_served_answer_is_always_what_the_read_models_held_at_the_current_stamp(
    steps: list[tuple[object, ...]],
) -> None:
    """Model: the read models are a version number; an answer is the version it read.

    A render reads the stamp first, then the read models, possibly after a
    change slipped in between (``late``); whatever is served afterwards must
    be the current version.
    """
    kept, changes, _ = answers()
    version = 1
    for step in steps:
        if step[0] == "change":
            version += 1
            changes.stamp = version
        elif step[0] == "get":
            served = kept.get(str(step[1]), changes.current())
            assert served is None or served == str(version).encode()
        else:
            stamp = changes.current()
            kept.get(str(step[1]), stamp)
            if step[2]:  # a change commits while this render reads
                version += 1
                changes.stamp = version
            kept.put(str(step[1]), stamp, str(version).encode(), 1)
