"""Invariants of account fields and of the User aggregate, checked on generated input."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Gone, InvalidValue
from domain.users import ROLES, AccountRules, User, username_key

RULES = AccountRules()
NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
SPACES = st.text(" \t\n\u3000\u00a0", max_size=3)

valid_usernames = st.text(NAME_ALPHABET, min_size=RULES.username_min, max_size=RULES.username_max)
local_parts = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", min_size=1
)
domain_labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
valid_emails = st.builds(
    lambda local, host, tld: f"{local}@{host}.{tld}",
    local_parts.filter(lambda s: len(s) <= 64),
    domain_labels,
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6),
)


def _replayed(events: Sequence[Any]) -> Any:
    aggregate = None
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def _checked(rule: Callable[[str], str], raw: str) -> tuple[str | None, str | None]:
    """The normalised value, or None and the name of the field refused."""
    try:
        return rule(raw), None
    except InvalidValue as error:
        return None, error.field


# --- usernames ---------------------------------------------------------------------------------


@given(st.text(max_size=60))
def test_a_username_is_either_refused_by_name_or_returned_normalised_and_valid(raw: str) -> None:
    value, refused = _checked(RULES.username, raw)
    if value is None:
        assert refused == "username"
        return
    assert value == unicodedata.normalize("NFKC", raw).strip()
    assert RULES.username_min <= len(value) <= RULES.username_max
    assert re.fullmatch(RULES.username_pattern, value)
    assert RULES.username(value) == value


@given(valid_usernames, SPACES, SPACES)
def test_a_valid_username_survives_surrounding_whitespace(
    name: str, before: str, after: str
) -> None:
    assert RULES.username(before + name + after) == name


@given(st.text(NAME_ALPHABET, max_size=RULES.username_min - 1))
def test_a_username_shorter_than_the_minimum_is_refused(name: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        RULES.username(name)
    assert refused.value.field == "username"


@given(st.text(NAME_ALPHABET, min_size=RULES.username_max + 1, max_size=RULES.username_max + 20))
def test_a_username_longer_than_the_maximum_is_refused(name: str) -> None:
    with pytest.raises(InvalidValue):
        RULES.username(name)


@given(
    st.text(NAME_ALPHABET, min_size=2, max_size=RULES.username_max - 1),
    st.sampled_from(" /@:'\"<>\\\u00e9\u202e\u0000"),
    st.integers(min_value=1),
)
def test_a_username_with_a_character_outside_the_pattern_is_refused(
    name: str, bad: str, where: int
) -> None:
    index = 1 + where % (len(name) - 1)
    with pytest.raises(InvalidValue) as refused:
        RULES.username(name[:index] + bad + name[index:])
    assert refused.value.field == "username"


@given(valid_usernames)
def test_fullwidth_letters_normalise_to_the_ascii_username(name: str) -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    assert RULES.username(fullwidth) == name


@given(valid_usernames)
def test_the_uniqueness_key_of_a_username_ignores_case(name: str) -> None:
    assert username_key(name.upper()) == username_key(name.lower()) == username_key(name)


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=20))
def test_username_lengths_come_from_the_rules(minimum: int, extra: int) -> None:
    rules = AccountRules(username_min=minimum, username_max=minimum + extra)
    assert rules.username("a" * minimum) == "a" * minimum
    assert rules.username("a" * (minimum + extra)) == "a" * (minimum + extra)
    with pytest.raises(InvalidValue):
        rules.username("a" * (minimum + extra + 1))
    if minimum > 1:
        with pytest.raises(InvalidValue):
            rules.username("a" * (minimum - 1))


# --- emails --------------------------------------------------------------------------------


_UNICODE_PART = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=16)
any_emails = st.text(max_size=80) | st.builds(
    lambda local, host, tld: f"{local}@{host}.{tld}", _UNICODE_PART, _UNICODE_PART, _UNICODE_PART
)


@given(any_emails)
def test_an_email_is_either_refused_by_name_or_returned_normalised_and_stable(raw: str) -> None:
    value, refused = _checked(RULES.email, raw)
    if value is None:
        assert refused == "email"
        return
    assert value == value.strip()
    assert value.count("@") == 1
    assert not any(c.isspace() for c in value)
    assert len(value) <= RULES.email_max
    # A stored (normalised) address must normalise to itself, or its claim would move.
    assert RULES.email(value) == value


@given(valid_emails, SPACES, SPACES)
def test_emails_that_differ_in_case_and_surrounding_spaces_are_one_address(
    email: str, before: str, after: str
) -> None:
    assert RULES.email(before + email.upper() + after) == RULES.email(email) == email.lower()


@given(
    st.sampled_from(["", "plain", "@example.com", "a@", "a@b", "a@@b.com", "a b@c.com", "a@b .c"])
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        RULES.email(raw)
    assert refused.value.field == "email"


def test_an_email_longer_than_the_maximum_is_refused() -> None:
    long_local = "a" * (RULES.email_max - len("@example.com") + 1)
    with pytest.raises(InvalidValue):
        RULES.email(f"{long_local}@example.com")
    assert RULES.email(f"{long_local[:-1]}@example.com")


# --- passwords -----------------------------------------------------------------------------


@given(st.text(min_size=RULES.password_min, max_size=RULES.password_max))
def test_a_password_within_the_length_bounds_is_kept_exactly(password: str) -> None:
    assert RULES.password(password) == password


@given(st.text(max_size=RULES.password_min - 1) | st.text(min_size=RULES.password_max + 1))
def test_a_password_outside_the_length_bounds_is_refused(password: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        RULES.password(password)
    assert refused.value.field == "password"


# --- the User aggregate --------------------------------------------------------------------


def _user() -> User:
    user = User.register(uuid4(), "sealed-name", "sealed-email", "sealed-hash")
    user.collect_events()
    return user


role_changes = st.lists(st.tuples(st.booleans(), st.sampled_from(sorted(ROLES))), max_size=30)


@given(role_changes)
def test_roles_follow_grants_and_revokes_and_repeats_record_nothing(
    changes: list[tuple[bool, str]],
) -> None:
    user = User.register(uuid4(), "n", "e", "h")
    expected: set[str] = set()
    changed = 0
    for grant, role in changes:
        if grant:
            changed += role not in expected
            expected.add(role)
            user.grant_role(role)
        else:
            changed += role in expected
            expected.discard(role)
            user.revoke_role(role)
        assert user.roles == expected
    events = user.collect_events()
    assert len(events) == 1 + changed
    assert _replayed(events).roles == expected


@given(st.sampled_from(sorted(ROLES)))
def test_granting_a_role_twice_records_one_event(role: str) -> None:
    user = _user()
    user.grant_role(role)
    user.grant_role(role)
    assert [type(e) for e in user.collect_events()] == [User.RoleGranted]


@given(st.text(max_size=20).filter(lambda r: r not in ROLES))
def test_an_unknown_role_is_refused_and_records_nothing(role: str) -> None:
    user = _user()
    with pytest.raises(InvalidValue) as refused:
        user.grant_role(role)
    assert refused.value.field == "role"
    with pytest.raises(InvalidValue):
        user.revoke_role(role)
    assert user.collect_events() == []


_COMMANDS: dict[str, Any] = {
    "rename": lambda u: u.rename("sealed-other"),
    "change_email": lambda u: u.change_email("sealed-other"),
    "change_password": lambda u: u.change_password("sealed-other"),
    "grant_role": lambda u: u.grant_role("admin"),
    "revoke_role": lambda u: u.revoke_role("admin"),
    "delete": lambda u: u.delete(),
}


@given(st.lists(st.sampled_from(sorted(_COMMANDS)), min_size=1, max_size=10), role_changes)
def test_a_deleted_user_refuses_every_command_and_records_nothing(
    commands: list[str], before: list[tuple[bool, str]]
) -> None:
    user = _user()
    for grant, role in before:
        (user.grant_role if grant else user.revoke_role)(role)
    user.delete()
    events = user.collect_events()
    for name in commands:
        with pytest.raises(Gone):
            _COMMANDS[name](user)
    assert user.collect_events() == []
    assert user.deleted and user.roles == set()
    assert (user.sealed_username, user.sealed_email, user.sealed_password_hash) == ("", "", "")
    assert isinstance(events[-1], User.Deleted)


@given(st.lists(st.sampled_from(["rename", "change_email", "change_password"]), max_size=10))
def test_replaying_a_users_events_rebuilds_the_same_user(commands: list[str]) -> None:
    user = User.register(uuid4(), "n0", "e0", "h0")
    for index, name in enumerate(commands, start=1):
        getattr(user, name)(f"sealed-{index}")
    replayed = _replayed(user.collect_events())
    assert replayed.id == user.id and replayed.version == user.version
    assert (replayed.sealed_username, replayed.sealed_email, replayed.sealed_password_hash) == (
        user.sealed_username,
        user.sealed_email,
        user.sealed_password_hash,
    )
