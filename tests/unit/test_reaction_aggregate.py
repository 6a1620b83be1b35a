"""Reactions: one aggregate per (user, target); counts from its events match a model."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domain.errors import InvalidValue
from domain.reactions import KINDS, Reaction

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_aggregate_id_is_derived_from_the_user_and_the_target() -> None:
    user, target = uuid4(), uuid4()
    assert Reaction.open(user, "track", target).id == Reaction.id_for(user, target)
    assert Reaction.id_for(user, target) != Reaction.id_for(target, user)


def test_unknown_kinds_and_targets_are_refused() -> None:
    reaction = Reaction.open(uuid4(), "track", uuid4())
    with pytest.raises(InvalidValue):
        reaction.set("meh", AT)
    with pytest.raises(InvalidValue):
        Reaction.open(uuid4(), "user", uuid4())


def counts_from(events: list[Any]) -> Counter[str]:
    """What a projector adds up from the events alone."""
    counts: Counter[str] = Counter()
    for domain_event in events:
        if isinstance(domain_event, Reaction.Set):
            counts[domain_event.kind] += 1
            if domain_event.replaced is not None:
                counts[domain_event.replaced] -= 1
        elif isinstance(domain_event, Reaction.Cleared):
            counts[domain_event.kind] -= 1
    return counts


class Reactions(RuleBasedStateMachine):
    """Users set and clear reactions on one target; the events' sums match a model."""

    def __init__(self) -> None:
        super().__init__()
        self.target = uuid4()
        self.users = [uuid4() for _ in range(3)]
        self.aggregates: dict[int, Reaction] = {}
        self.model: dict[int, set[str]] = {}
        self.events: list[Any] = []

    def _aggregate(self, user: int) -> Reaction:
        if user not in self.aggregates:
            self.aggregates[user] = Reaction.open(self.users[user], "track", self.target)
        return self.aggregates[user]

    @rule(user=st.integers(0, 2), kind=st.sampled_from(KINDS))
    def set(self, user: int, kind: str) -> None:
        held = self.model.setdefault(user, set())
        changes = kind not in held
        held.add(kind)
        held.discard({"like": "dislike", "dislike": "like"}.get(kind, ""))
        aggregate = self._aggregate(user)
        version = aggregate.version
        assert aggregate.set(kind, AT) == changes
        assert (aggregate.version > version) == changes
        self.events.extend(aggregate.collect_events())

    @rule(user=st.integers(0, 2), kind=st.sampled_from(KINDS))
    def clear(self, user: int, kind: str) -> None:
        held = self.model.setdefault(user, set())
        changes = kind in held
        held.discard(kind)
        aggregate = self._aggregate(user)
        assert aggregate.clear(kind, AT) == changes
        self.events.extend(aggregate.collect_events())

    @invariant()
    def like_and_dislike_never_stand_together(self) -> None:
        for aggregate in self.aggregates.values():
            assert not {"like", "dislike"} <= aggregate.kinds

    @invariant()
    def each_users_reactions_match_the_model(self) -> None:
        for user, aggregate in self.aggregates.items():
            assert aggregate.kinds == self.model.get(user, set())

    @invariant()
    def the_counts_of_the_events_match_the_model(self) -> None:
        counts = counts_from(self.events)
        for kind in KINDS:
            assert counts[kind] == sum(kind in held for held in self.model.values())


Reactions.TestCase.settings = hypothesis_settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_reaction_counts_match_a_model = Reactions.TestCase
