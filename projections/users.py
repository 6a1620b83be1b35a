"""The users read model: public profiles, and each user's own view with email."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from application.ports import PersonalDataVault
from domain.users import User
from projections.projector import Projector, on
from projections.schema import users

DELETED_USER = "deleted user"


class UsersProjector(Projector):
    """Keeps ``users`` in step with the User aggregates (personal data unsealed here)."""

    name = "users"
    version = 1
    tables = (users,)

    def __init__(self, vault: PersonalDataVault) -> None:
        self._vault = vault

    def _clear(self, event: Any, sealed: str) -> str | None:
        return self._vault.unseal(event.originator_id, sealed)

    @on(User.Registered)
    def _registered(self, conn: Connection, event: Any) -> None:
        conn.execute(
            insert(users).values(
                id=event.originator_id,
                username=self._clear(event, event.sealed_username) or DELETED_USER,
                email=self._clear(event, event.sealed_email),
                roles="",
                deleted=False,
                created_at=event.timestamp,
                updated_at=event.timestamp,
            )
        )

    @on(User.Renamed)
    def _renamed(self, conn: Connection, event: Any) -> None:
        username = self._clear(event, event.sealed_username)
        if username is not None:
            self._update(conn, event, username=username)

    @on(User.EmailChanged)
    def _email_changed(self, conn: Connection, event: Any) -> None:
        email = self._clear(event, event.sealed_email)
        if email is not None:
            self._update(conn, event, email=email)

    @on(User.RoleGranted, User.RoleRevoked)
    def _roles_changed(self, conn: Connection, event: Any) -> None:
        row = conn.execute(users.select().where(users.c.id == event.originator_id)).first()
        if row is None:
            return
        roles = set(filter(None, row.roles.split(",")))
        if isinstance(event, User.RoleGranted):
            roles.add(event.role)
        else:
            roles.discard(event.role)
        self._update(conn, event, roles=",".join(sorted(roles)))

    @on(User.Deleted)
    def _deleted(self, conn: Connection, event: Any) -> None:
        self._update(conn, event, username=DELETED_USER, email=None, roles="", deleted=True)

    @staticmethod
    def _update(conn: Connection, event: Any, **values: Any) -> None:
        conn.execute(
            update(users)
            .where(users.c.id == event.originator_id)
            .values(updated_at=event.timestamp, **values)
        )
