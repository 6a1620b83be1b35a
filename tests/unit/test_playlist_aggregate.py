"""The Playlist aggregate: its rules, and a stateful model of its entries."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.errors import Gone, InvalidValue, LimitReached, NoSuchPart, NotPermitted
from domain.playlists import Playlist, PlaylistRules, name_key

MAX_ENTRIES = 6


def new_playlist(owner: UUID | None = None, visibility: str = "public") -> Playlist:
    return Playlist.create(uuid4(), owner or uuid4(), "Road trip", "", visibility)


def test_names_are_trimmed_and_checked() -> None:
    rules = PlaylistRules(name_max=10)
    assert rules.name("  Mix \u0301 ") == "Mix \u0301"
    with pytest.raises(InvalidValue):
        rules.name("   ")
    with pytest.raises(InvalidValue):
        rules.name("x" * 11)
    with pytest.raises(InvalidValue):
        rules.name("a\x00b")


def test_descriptions_keep_line_breaks_but_refuse_other_control_characters() -> None:
    rules = PlaylistRules(description_max=20)
    assert rules.description(None) == ""
    assert rules.description(" line one\nline two ") == "line one\nline two"
    with pytest.raises(InvalidValue):
        rules.description("bell\x07")
    with pytest.raises(InvalidValue):
        rules.description("y" * 21)


def test_name_keys_ignore_case_but_not_the_owner() -> None:
    owner, other = uuid4(), uuid4()
    assert name_key(owner, "Straße") == name_key(owner, "STRASSE")
    assert name_key(owner, "Mix") != name_key(other, "Mix")


def test_visibility_must_be_public_or_private() -> None:
    with pytest.raises(InvalidValue):
        new_playlist(visibility="friends")


def test_only_the_owner_changes_a_playlist() -> None:
    playlist = new_playlist()
    stranger = uuid4()
    with pytest.raises(NotPermitted):
        playlist.rename(stranger, "Mine now")
    with pytest.raises(NotPermitted):
        playlist.add_entry(stranger, uuid4(), uuid4(), None, MAX_ENTRIES)
    with pytest.raises(NotPermitted):
        playlist.delete(stranger)
    assert playlist.version == 1


def test_a_private_playlist_is_visible_to_its_owner_only() -> None:
    owner = uuid4()
    playlist = new_playlist(owner, "private")
    assert playlist.visible_to(owner)
    assert not playlist.visible_to(uuid4())
    assert not playlist.visible_to(None)
    playlist.change_visibility(owner, "public")
    assert playlist.visible_to(None)


def test_changes_that_change_nothing_record_nothing() -> None:
    playlist = new_playlist()
    owner = playlist.owner_id
    playlist.rename(owner, "Road trip")
    playlist.describe(owner, "")
    playlist.change_visibility(owner, "public")
    entry = uuid4()
    playlist.add_entry(owner, entry, uuid4(), None, MAX_ENTRIES)
    playlist.move_entry(owner, entry, 0)
    assert playlist.version == 2


def test_a_deleted_playlist_accepts_no_more_commands() -> None:
    playlist = new_playlist()
    playlist.delete(playlist.owner_id)
    assert not playlist.visible_to(playlist.owner_id)
    with pytest.raises(Gone):
        playlist.rename(playlist.owner_id, "Again")


class PlaylistEntries(RuleBasedStateMachine):
    """Any sequence of add/remove/move keeps positions 0..n-1 and matches a list model."""

    def __init__(self) -> None:
        super().__init__()
        self.owner = uuid4()
        self.playlist = Playlist.create(uuid4(), self.owner, "Model", "", "public")
        self.model: list[tuple[UUID, UUID]] = []
        self.tracks = [uuid4() for _ in range(3)]
        self.history: list[Any] = list(self.playlist.collect_events())

    def _record(self) -> None:
        self.history.extend(self.playlist.collect_events())

    @rule(data=st.data(), track=st.integers(0, 2), at_end=st.booleans())
    def add(self, data: st.DataObject, track: int, at_end: bool) -> None:
        track_id, entry_id = self.tracks[track], uuid4()
        position = None if at_end else data.draw(st.integers(0, len(self.model)))
        if len(self.model) >= MAX_ENTRIES:
            with pytest.raises(LimitReached):
                self.playlist.add_entry(self.owner, entry_id, track_id, position, MAX_ENTRIES)
            return
        used = self.playlist.add_entry(self.owner, entry_id, track_id, position, MAX_ENTRIES)
        expected = len(self.model) if position is None else position
        assert used == expected
        self.model.insert(expected, (entry_id, track_id))
        self._record()

    @rule(position=st.integers(-3, -1) | st.integers(MAX_ENTRIES + 1, MAX_ENTRIES + 3))
    def add_out_of_range(self, position: int) -> None:
        if len(self.model) >= MAX_ENTRIES:
            return
        with pytest.raises(InvalidValue):
            self.playlist.add_entry(self.owner, uuid4(), self.tracks[0], position, MAX_ENTRIES)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.model) - 1))
        entry_id, _ = self.model.pop(index)
        self.playlist.remove_entry(self.owner, entry_id)
        self._record()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.model) - 1))
        to = data.draw(st.integers(0, len(self.model) - 1))
        entry = self.model.pop(index)
        self.model.insert(to, entry)
        self.playlist.move_entry(self.owner, entry[0], to)
        self._record()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def move_out_of_range(self, data: st.DataObject) -> None:
        entry_id = self.model[data.draw(st.integers(0, len(self.model) - 1))][0]
        with pytest.raises(InvalidValue):
            self.playlist.move_entry(self.owner, entry_id, len(self.model))

    @rule()
    def remove_an_unknown_entry(self) -> None:
        with pytest.raises(NoSuchPart):
            self.playlist.remove_entry(self.owner, uuid4())

    @invariant()
    def entries_match_the_model_at_positions_0_to_n_minus_1(self) -> None:
        entries = [(e.entry_id, e.track_id) for e in self.playlist.entries]
        assert entries == self.model
        for position, (entry_id, _) in enumerate(self.model):
            assert self.playlist.position_of(entry_id) == position
        assert not self.playlist.pending_events

    @invariant()
    def replaying_the_events_gives_the_same_entries(self) -> None:
        replayed: Any = None
        for domain_event in self.history:
            replayed = domain_event.mutate(replayed)
        assert replayed.entries == self.playlist.entries
        assert replayed.version == self.playlist.version


PlaylistEntries.TestCase.settings = hypothesis_settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_playlist_entries_match_a_list_model = PlaylistEntries.TestCase
