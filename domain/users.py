"""The User aggregate and the rules for usernames, emails and passwords."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Gone, InvalidValue

ROLES = frozenset({"auditor", "admin"})

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class AccountRules:
    """Lengths and formats of account fields; the values come from settings."""

    username_min: int = 3
    username_max: int = 32
    username_pattern: str = r"^[A-Za-z0-9_.-]+$"
    email_max: int = 254
    password_min: int = 8
    password_max: int = 256

    def username(self, raw: str) -> str:
        """The username as shown (NFKC, trimmed), after checking its length and format."""
        value = unicodedata.normalize("NFKC", raw).strip()
        if not self.username_min <= len(value) <= self.username_max:
            raise InvalidValue(
                "username",
                f"must be {self.username_min} to {self.username_max} characters long",
            )
        if not re.fullmatch(self.username_pattern, value):
            raise InvalidValue("username", "contains characters that are not allowed")
        return value

    def email(self, raw: str) -> str:
        """The email normalised (trimmed, lower-cased), after checking its format."""
        value = unicodedata.normalize("NFKC", raw).strip().lower()
        if len(value) > self.email_max or not _EMAIL.fullmatch(value):
            raise InvalidValue("email", "is not a valid email address")
        return value

    def password(self, raw: str) -> str:
        """The password unchanged, after checking its length."""
        if not self.password_min <= len(raw) <= self.password_max:
            raise InvalidValue(
                "password",
                f"must be {self.password_min} to {self.password_max} characters long",
            )
        return raw


def _check_role(role: str) -> None:
    # Refusing unknown roles on revoke too: "revoked" must not be reported for a typo.
    if role not in ROLES:
        raise InvalidValue("role", f"must be one of {', '.join(sorted(ROLES))}")


def username_key(username: str) -> str:
    """The key that makes usernames unique regardless of case."""
    return username.casefold()


class User(Aggregate):
    """A registered person.

    Everything personal (username, email, password hash) is held only as
    ciphertext sealed with the user's own key, which lives outside the event
    log: forgetting the key erases it from every event at once
    (crypto-shredding) while the events keep their shape. The aggregate never
    needs the clear values to decide: uniqueness lives in claims, and the
    application compares passwords.
    """

    class Registered(Aggregate.Created):
        """An account was opened."""

        sealed_username: str
        sealed_email: str
        sealed_password_hash: str

    class Renamed(Aggregate.Event):
        """The username changed."""

        sealed_username: str

    class EmailChanged(Aggregate.Event):
        """The email changed."""

        sealed_email: str

    class PasswordChanged(Aggregate.Event):
        """The password changed."""

        sealed_password_hash: str

    class RoleGranted(Aggregate.Event):
        """A role was given."""

        role: str

    class RoleRevoked(Aggregate.Event):
        """A role was taken away."""

        role: str

    class Deleted(Aggregate.Event):
        """The account was closed; its key is destroyed right after."""

    @classmethod
    def register(
        cls, user_id: UUID, sealed_username: str, sealed_email: str, sealed_password_hash: str
    ) -> User:
        """A new account with the given id (the application seals its data first)."""
        return cls._create(
            cls.Registered,
            id=user_id,
            sealed_username=sealed_username,
            sealed_email=sealed_email,
            sealed_password_hash=sealed_password_hash,
        )

    @event(Registered)
    def __init__(self, sealed_username: str, sealed_email: str, sealed_password_hash: str) -> None:
        self.sealed_username = sealed_username
        self.sealed_email = sealed_email
        self.sealed_password_hash = sealed_password_hash
        self.roles: set[str] = set()
        self.deleted = False

    def _check_live(self) -> None:
        if self.deleted:
            raise Gone("this account was deleted")

    def rename(self, sealed_username: str) -> None:
        """Change the username (the caller has already claimed the new one)."""
        self._check_live()
        self._renamed(sealed_username=sealed_username)

    @event(Renamed)
    def _renamed(self, sealed_username: str) -> None:
        self.sealed_username = sealed_username

    def change_email(self, sealed_email: str) -> None:
        """Replace the sealed email (the caller has already claimed the new address)."""
        self._check_live()
        self._email_changed(sealed_email=sealed_email)

    @event(EmailChanged)
    def _email_changed(self, sealed_email: str) -> None:
        self.sealed_email = sealed_email

    def change_password(self, sealed_password_hash: str) -> None:
        """Store a new password hash (the caller has checked the current password)."""
        self._check_live()
        self._password_changed(sealed_password_hash=sealed_password_hash)

    @event(PasswordChanged)
    def _password_changed(self, sealed_password_hash: str) -> None:
        self.sealed_password_hash = sealed_password_hash

    def grant_role(self, role: str) -> None:
        """Give a role; granting one already held records nothing."""
        self._check_live()
        _check_role(role)
        if role not in self.roles:
            self._role_granted(role=role)

    @event(RoleGranted)
    def _role_granted(self, role: str) -> None:
        self.roles.add(role)

    def revoke_role(self, role: str) -> None:
        """Take a role away; revoking one not held records nothing, an unknown one is refused."""
        self._check_live()
        _check_role(role)
        if role in self.roles:
            self._role_revoked(role=role)

    @event(RoleRevoked)
    def _role_revoked(self, role: str) -> None:
        self.roles.discard(role)

    def delete(self) -> None:
        """Close the account. Its public content stays, attributed to a deleted user."""
        self._check_live()
        self._deleted()

    @event(Deleted)
    def _deleted(self) -> None:
        self.deleted = True
        self.sealed_username = ""
        self.sealed_email = ""
        self.sealed_password_hash = ""
        self.roles = set()
