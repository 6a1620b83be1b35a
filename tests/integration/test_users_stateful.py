"""Any sequence of user commands leaves read models equal to a simple in-memory model.

A Hypothesis state machine drives the real application and projectors, on SQLite and
PostgreSQL, with a small pool of names and emails so that clashes are frequent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from application.errors import NotFound, Unauthenticated
from domain.errors import AlreadyClaimed, InvalidValue
from domain.users import ROLES
from infrastructure.bootstrap import Container, build
from projections.schema import users
from projections.users import DELETED_USER
from tests.conftest import catch_up, make_settings

NAMES = st.sampled_from(["alice", "Alice", "bob", "BOB", "carol", "dave"])
EMAILS = st.sampled_from(["a@example.com", "A@Example.COM ", "b@example.com", "c@example.com"])
PASSWORDS = st.sampled_from(["correct horse", "battery staple"])
ROLE_NAMES = st.sampled_from(sorted(ROLES))


@dataclass
class ModelUser:
    """What the read model should say about one user."""

    username: str
    email: str
    password: str
    roles: set[str] = field(default_factory=set)
    deleted: bool = False

    def row(self) -> tuple[str, str | None, str, bool]:
        if self.deleted:
            return (DELETED_USER, None, "", True)
        return (self.username, self.email, ",".join(sorted(self.roles)), False)


def _machine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> type[Any]:
    examples = itertools.count()

    class UserCommandsMachine(RuleBasedStateMachine):
        """Random user commands against the application, checked against a dict of ModelUsers."""

        accounts = Bundle("accounts")

        def __init__(self) -> None:
            super().__init__()
            directory = tmp_path / f"example-{next(examples)}"
            self.container: Container = build(make_settings(backend, directory, request))
            self.model: dict[UUID, ModelUser] = {}

        def teardown(self) -> None:
            self.container.close()

        # The model's view of who holds a name: the live user with that key, if any.
        def _holder_of_name(self, name: str) -> UUID | None:
            key = name.casefold()
            return next(
                (
                    i
                    for i, u in self.model.items()
                    if not u.deleted and u.username.casefold() == key
                ),
                None,
            )

        def _holder_of_email(self, email: str) -> UUID | None:
            key = email.strip().lower()
            return next(
                (i for i, u in self.model.items() if not u.deleted and u.email == key), None
            )

        @rule(target=accounts, name=NAMES, email=EMAILS, password=PASSWORDS)
        def register(self, name: str, email: str, password: str) -> Any:
            if self._holder_of_name(name) or self._holder_of_email(email):
                with pytest.raises(AlreadyClaimed):
                    self.container.app.register_user(name, email, password)
                return multiple()
            user_id = self.container.app.register_user(name, email, password).value
            self.model[user_id] = ModelUser(name, email.strip().lower(), password)
            return user_id

        @rule(user_id=accounts, name=NAMES)
        def rename(self, user_id: UUID, name: str) -> None:
            user = self.model[user_id]
            holder = self._holder_of_name(name)
            if user.deleted:
                with pytest.raises(NotFound):
                    self.container.app.change_identity(user_id, name, None)
            elif holder not in (None, user_id):
                with pytest.raises(AlreadyClaimed):
                    self.container.app.change_identity(user_id, name, None)
            else:
                self.container.app.change_identity(user_id, name, None)
                user.username = name

        @rule(user_id=accounts, email=EMAILS)
        def change_email(self, user_id: UUID, email: str) -> None:
            user = self.model[user_id]
            holder = self._holder_of_email(email)
            if user.deleted:
                with pytest.raises(NotFound):
                    self.container.app.change_identity(user_id, None, email)
            elif holder not in (None, user_id):
                with pytest.raises(AlreadyClaimed):
                    self.container.app.change_identity(user_id, None, email)
            else:
                self.container.app.change_identity(user_id, None, email)
                user.email = email.strip().lower()

        @rule(user_id=accounts, current=PASSWORDS, new=PASSWORDS)
        def change_password(self, user_id: UUID, current: str, new: str) -> None:
            user = self.model[user_id]
            if user.deleted:
                with pytest.raises(NotFound):
                    self.container.app.change_password(user_id, current, new)
            elif current != user.password:
                with pytest.raises(InvalidValue):
                    self.container.app.change_password(user_id, current, new)
            else:
                self.container.app.change_password(user_id, current, new)
                user.password = new

        @rule(user_id=accounts, role=ROLE_NAMES, grant=st.booleans())
        def change_role(self, user_id: UUID, role: str, grant: bool) -> None:
            # Roles are given by username: a deleted user's old name may now be someone else's.
            name = self.model[user_id].username
            change = self.container.app.grant_role if grant else self.container.app.revoke_role
            holder = self._holder_of_name(name)
            if holder is None:
                with pytest.raises(NotFound):
                    change(name, role)
                return
            assert change(name.upper(), role).value == holder
            roles = self.model[holder].roles
            if grant:
                roles.add(role)
            else:
                roles.discard(role)

        @rule(user_id=accounts)
        def delete(self, user_id: UUID) -> None:
            user = self.model[user_id]
            if user.deleted:
                with pytest.raises(NotFound):
                    self.container.app.delete_user(user_id)
            else:
                self.container.app.delete_user(user_id)
                user.deleted = True

        @rule(user_id=accounts, password=PASSWORDS)
        def sign_in(self, user_id: UUID, password: str) -> None:
            # By a user's name in another case: whoever holds that name now is signed in.
            name = self.model[user_id].username.swapcase()
            holder = self._holder_of_name(name)
            if holder is None or password != self.model[holder].password:
                with pytest.raises(Unauthenticated):
                    self.container.app.authenticate(name, password)
            else:
                assert self.container.app.authenticate(name, password).id == holder

        @invariant()
        def read_models_equal_the_model(self) -> None:
            catch_up(self.container)
            with self.container.read_engine.connect() as conn:
                rows = conn.execute(
                    select(
                        users.c.id,
                        users.c.username,
                        users.c.sealed_email,
                        users.c.roles,
                        users.c.deleted,
                    )
                ).all()
            # The email is kept sealed in the read model: own_profile (below) unseals it.
            actual = {
                r.id: (r.username, r.sealed_email is not None, r.roles, r.deleted) for r in rows
            }
            expected = {
                user_id: (row[0], row[1] is not None, row[2], row[3])
                for user_id, row in ((i, u.row()) for i, u in self.model.items())
            }
            assert actual == expected
            for user_id, user in self.model.items():
                own = self.container.queries.users.own_profile(user_id)
                if user.deleted:
                    assert own is None
                else:
                    assert own is not None
                    assert (own.username, own.email, set(own.roles)) == (
                        user.username,
                        user.email,
                        user.roles,
                    )

        @invariant()
        def the_write_side_agrees_with_the_model(self) -> None:
            for user_id, user in self.model.items():
                if user.deleted:
                    with pytest.raises(NotFound):
                        self.container.app.account(user_id)
                    continue
                account = self.container.app.account(user_id)
                assert (account.username, account.email, set(account.roles)) == (
                    user.username,
                    user.email,
                    user.roles,
                )

    return UserCommandsMachine


def test_any_sequence_of_user_commands_yields_read_models_equal_to_a_simple_model(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_state_machine_as_test(
        _machine(backend, tmp_path, request),
        settings=hypothesis_settings(
            max_examples=12,
            stateful_step_count=15,
            deadline=None,
            # Each run builds a container: shrinking would take minutes. A failure is
            # reported unshrunk, as its (at most 15) steps.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
