"""The users read model: public profiles, and each user's own view with email.

The username is public (every profile shows it) and is kept in clear; the
email stays sealed with the user's key, as in the events, and is unsealed
only when its owner reads it. Once an account is deleted its key is gone, so
no copy of the email in this model (old row versions included) can be read.
On SQLite, after a batch with deletions, the write-ahead log is truncated so
that no older page image keeps the username either (``secure_delete`` zeroes
the freed space in the database file itself); see ``docs/erasure.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, update

from application.ports import PersonalDataVault
from domain.users import User
from projections.projector import Projector, on
from projections.schema import users

DELETED_USER = "deleted user"

log = logging.getLogger(__name__)

_CHECKPOINT_WAIT_MS = 2000


class UsersProjector(Projector):
    """Keeps ``users`` in step with the User aggregates (usernames unsealed here)."""

    name = "users"
    # 2: the email is kept sealed (column ``sealed_email``).
    version = 2
    tables = (users,)

    def __init__(self, vault: PersonalDataVault) -> None:
        self._vault = vault

    def _clear(self, event: Any, sealed: str) -> str | None:
        return self._vault.unseal(event.originator_id, sealed)

    def apply(self, conn: Connection, events: Sequence[Any]) -> None:
        """A batch: the users' keys read together, registrations inserted together."""
        self._vault.preload(
            {e.originator_id for e in events if isinstance(e, User.Registered | User.Renamed)}
        )
        registrations: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, User.Registered):
                registrations.append(self._registration(event))
                continue
            # In log order: a user's row exists before anything changes it.
            if registrations:
                conn.execute(insert(users), registrations)
                registrations = []
            super().apply(conn, [event])
        if registrations:
            conn.execute(insert(users), registrations)

    def _registration(self, event: Any) -> dict[str, Any]:
        return {
            "id": event.originator_id,
            "username": self._clear(event, event.sealed_username) or DELETED_USER,
            "sealed_email": event.sealed_email,
            "roles": "",
            "deleted": False,
            "created_at": event.timestamp,
            "updated_at": event.timestamp,
        }

    @on(User.Registered)
    def _registered(self, conn: Connection, event: Any) -> None:
        conn.execute(insert(users).values(self._registration(event)))

    @on(User.Renamed)
    def _renamed(self, conn: Connection, event: Any) -> None:
        username = self._clear(event, event.sealed_username)
        if username is not None:
            self._update(conn, event, username=username)

    @on(User.EmailChanged)
    def _email_changed(self, conn: Connection, event: Any) -> None:
        self._update(conn, event, sealed_email=event.sealed_email)

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
        self._update(conn, event, username=DELETED_USER, sealed_email=None, roles="", deleted=True)

    def committed(self, engine: Engine, events: Sequence[Any]) -> None:
        """After deletions: leave no old page image of a deleted username behind."""
        if any(isinstance(e, User.Deleted) for e in events):
            erase_residue(engine, "users")

    @staticmethod
    def _update(conn: Connection, event: Any, **values: Any) -> None:
        conn.execute(
            update(users)
            .where(users.c.id == event.originator_id)
            .values(updated_at=event.timestamp, **values)
        )


def erase_residue(engine: Engine, table: str) -> None:
    """Make deleted rows of ``table`` physically unreadable, as far as the database allows.

    SQLite: ``secure_delete`` already zeroed the freed space; truncating the
    write-ahead log drops the page images that still hold the old rows.
    PostgreSQL: VACUUM prunes the dead row versions (their space is reused;
    see ``docs/erasure.md`` for what remains in free space and WAL).
    """
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if engine.dialect.name == "sqlite":
                # Wait for readers and writers a little, not the full busy timeout: this
                # runs in the projector's thread. A later deletion truncates what is left.
                timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
                conn.exec_driver_sql(f"PRAGMA busy_timeout={_CHECKPOINT_WAIT_MS}")
                try:
                    busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(timeout or 0)}")
                if busy is not None and busy[0]:
                    log.warning("could not truncate the write-ahead log (readers busy)")
            elif engine.dialect.name == "postgresql":
                quoted = conn.dialect.identifier_preparer.quote(table)
                conn.exec_driver_sql(f"VACUUM {quoted}")
    except Exception:  # best effort: the next deletion tries again
        log.warning("could not erase the residue of deleted rows in %s", table, exc_info=True)
