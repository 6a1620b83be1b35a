"""Commands on accounts: register, rename, change email or password, roles, delete."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from application.context import Handlers
from application.errors import NotFound, Unauthenticated
from application.unit_of_work import Committed, UnitOfWork
from domain.errors import InvalidValue
from domain.users import User, username_key

USERNAME = "username"
EMAIL = "email"


@dataclass(frozen=True)
class Account:
    """A user's personal data in clear, for the user's own eyes."""

    id: UUID
    username: str
    email: str
    roles: frozenset[str]


class UserCommands(Handlers):
    """Account commands. Uniqueness of usernames and emails rests on claims."""

    def register_user(self, username: str, email: str, password: str) -> Committed[UUID]:
        """Create an account; :class:`domain.errors.AlreadyClaimed` if a name is taken."""
        rules = self._rules.accounts
        username = rules.username(username)
        email = rules.email(email)
        password_hash = self._hasher.hash(rules.password(password))
        user_id = uuid4()
        sealed = {
            "sealed_username": self._vault.seal(user_id, username),
            "sealed_email": self._vault.seal(user_id, email),
            "sealed_password_hash": self._vault.seal(user_id, password_hash),
        }

        def decide(uow: UnitOfWork) -> UUID:
            uow.claim(USERNAME, username_key(username), user_id)
            uow.claim(EMAIL, email, user_id)
            uow.add(User.register(user_id, **sealed))
            return user_id

        return self._runner.run(decide)

    def account(self, user_id: UUID) -> Account:
        """The user's own data in clear; :class:`NotFound` for deleted accounts."""
        return self._account(UnitOfWork(self._runner.app), user_id)

    def _account(self, uow: UnitOfWork, user_id: UUID) -> Account:
        user = uow.find(User, user_id)
        if user is None or user.deleted:
            raise NotFound("user not found")
        username = self._vault.unseal(user.id, user.sealed_username)
        email = self._vault.unseal(user.id, user.sealed_email)
        if username is None or email is None:
            raise NotFound("user not found")
        return Account(user.id, username, email, frozenset(user.roles))

    def authenticate(self, username: str, password: str) -> Account:
        """The account whose credentials these are; :class:`Unauthenticated` otherwise.

        An unknown username costs the same hash verification as a wrong password,
        so response times do not tell which usernames exist.
        """
        uow = UnitOfWork(self._runner.app)
        owner = uow.owner_of(USERNAME, username_key(username.strip()))
        user = uow.find(User, owner) if owner else None
        stored = (
            self._vault.unseal(user.id, user.sealed_password_hash)
            if user is not None and not user.deleted
            else None
        )
        if not self._hasher.verify(stored, password) or user is None:
            raise Unauthenticated("invalid username or password")
        return self._account(uow, user.id)

    def change_identity(
        self, user_id: UUID, username: str | None, email: str | None
    ) -> Committed[UUID]:
        """Change the username and/or email, each claimed before the old one is released."""
        rules = self._rules.accounts
        new_username = rules.username(username) if username is not None else None
        new_email = rules.email(email) if email is not None else None

        def decide(uow: UnitOfWork) -> UUID:
            current = self._account(uow, user_id)
            user = uow.get(User, user_id, "user")
            if new_username is not None and new_username != current.username:
                uow.claim(USERNAME, username_key(new_username), user_id)
                if username_key(new_username) != username_key(current.username):
                    uow.release(USERNAME, username_key(current.username), user_id)
                user.rename(self._vault.seal(user_id, new_username))
            if new_email is not None and new_email != current.email:
                uow.claim(EMAIL, new_email, user_id)
                uow.release(EMAIL, current.email, user_id)
                user.change_email(self._vault.seal(user_id, new_email))
            return user_id

        return self._runner.run(decide)

    def change_password(
        self, user_id: UUID, current_password: str, new_password: str
    ) -> Committed[UUID]:
        """Replace the password; the current one must be given and right."""
        rules = self._rules.accounts
        new_password = rules.password(new_password)
        user = UnitOfWork(self._runner.app).find(User, user_id)
        if user is None or user.deleted:
            raise NotFound("user not found")
        stored = self._vault.unseal(user_id, user.sealed_password_hash)
        if stored is None or not self._hasher.verify(stored, current_password):
            raise InvalidValue("current_password", "is not the current password")
        sealed_hash = self._vault.seal(user_id, self._hasher.hash(new_password))

        def decide(uow: UnitOfWork) -> UUID:
            uow.get(User, user_id, "user").change_password(sealed_hash)
            return user_id

        return self._runner.run(decide)

    def grant_role(self, username: str, role: str) -> Committed[UUID]:
        """Give the named user a role (``auditor``, ``admin``)."""

        def decide(uow: UnitOfWork) -> UUID:
            user = self._user_named(uow, username)
            user.grant_role(role)
            return user.id

        return self._runner.run(decide)

    def revoke_role(self, username: str, role: str) -> Committed[UUID]:
        """Take a role away from the named user."""

        def decide(uow: UnitOfWork) -> UUID:
            user = self._user_named(uow, username)
            user.revoke_role(role)
            return user.id

        return self._runner.run(decide)

    def _user_named(self, uow: UnitOfWork, username: str) -> User:
        owner = uow.owner_of(USERNAME, username_key(username.strip()))
        if owner is None:
            raise NotFound(f"no user is named {username!r}")
        return uow.get(User, owner, "user")

    def delete_user(self, user_id: UUID) -> Committed[UUID]:
        """Close the account, free its names, then destroy its key (crypto-shredding)."""

        def decide(uow: UnitOfWork) -> UUID:
            current = self._account(uow, user_id)
            uow.release(USERNAME, username_key(current.username), user_id)
            uow.release(EMAIL, current.email, user_id)
            uow.get(User, user_id, "user").delete()
            return user_id

        committed = self._runner.run(decide)
        # Only once the deletion is durable: a failed save must leave the data readable.
        self._vault.forget(user_id)
        return committed
