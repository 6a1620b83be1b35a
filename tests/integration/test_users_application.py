"""The users part of the application, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from application.errors import NotFound, Unauthenticated
from domain.errors import AlreadyClaimed, InvalidValue
from infrastructure.bootstrap import Container
from tests.conftest import catch_up


def test_a_registered_user_appears_in_the_read_model_with_a_normalised_email(
    container: Container,
) -> None:
    committed = container.app.register_user("Alice", "  Alice@Example.COM ", "correct horse")
    catch_up(container)
    profile = container.queries.users.own_profile(committed.value)
    assert profile is not None
    assert (profile.username, profile.email) == ("Alice", "alice@example.com")


def test_usernames_are_unique_regardless_of_case(container: Container) -> None:
    container.app.register_user("Alice", "a@example.com", "correct horse")
    with pytest.raises(AlreadyClaimed):
        container.app.register_user("ALICE", "b@example.com", "correct horse")


def test_emails_are_unique(container: Container) -> None:
    container.app.register_user("alice", "a@example.com", "correct horse")
    with pytest.raises(AlreadyClaimed):
        container.app.register_user("bob", "A@example.com", "correct horse")


def test_parallel_registrations_of_one_name_let_exactly_one_through(container: Container) -> None:
    barrier = threading.Barrier(16)

    def register(i: int) -> str:
        barrier.wait()
        try:
            container.app.register_user("contested", f"u{i}@example.com", "correct horse")
        except AlreadyClaimed:
            return "taken"
        return "created"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(register, range(16)))
    assert outcomes.count("created") == 1
    assert outcomes.count("taken") == 15


def test_a_renamed_user_frees_the_old_name(container: Container) -> None:
    user = container.app.register_user("alice", "a@example.com", "correct horse").value
    container.app.change_identity(user, "alicia", None)
    other = container.app.register_user("alice", "b@example.com", "correct horse").value
    catch_up(container)
    assert container.queries.users.public_profile(user).username == "alicia"  # type: ignore[union-attr]
    assert container.queries.users.public_profile(other).username == "alice"  # type: ignore[union-attr]


def test_changing_the_password_needs_the_current_one(container: Container) -> None:
    user = container.app.register_user("alice", "a@example.com", "correct horse").value
    with pytest.raises(InvalidValue):
        container.app.change_password(user, "wrong", "battery staple")
    container.app.change_password(user, "correct horse", "battery staple")
    assert container.app.authenticate("alice", "battery staple").id == user
    with pytest.raises(Unauthenticated):
        container.app.authenticate("alice", "correct horse")


def test_a_deleted_account_is_unreadable_and_its_names_are_free(container: Container) -> None:
    user = container.app.register_user("alice", "a@example.com", "correct horse").value
    container.app.delete_user(user)
    catch_up(container)
    with pytest.raises(NotFound):
        container.app.account(user)
    public = container.queries.users.public_profile(user)
    assert public is not None and public.deleted and public.username == "deleted user"
    assert container.queries.users.own_profile(user) is None
    container.app.register_user("alice", "a@example.com", "correct horse")
