"""The sessions read model: each user's sign-in sessions, for listing them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, update

from domain.sessions import Session
from projections.projector import Projector, on
from projections.schema import auth_sessions


class SessionsProjector(Projector):
    """Keeps ``auth_sessions`` in step with the Session aggregates."""

    name = "sessions"
    # 2: the client's family (Session.Opened v2) is kept in its own column.
    version = 2
    tables = (auth_sessions,)

    @on(Session.Opened)
    def _opened(self, conn: Connection, event: Any) -> None:
        conn.execute(
            insert(auth_sessions).values(
                id=event.originator_id,
                user_id=event.user_id,
                client=event.client,
                client_family=event.client_family,
                created_at=event.timestamp,
                expires_at=event.expires_at,
            )
        )

    @on(Session.Rotated)
    def _rotated(self, conn: Connection, event: Any) -> None:
        conn.execute(
            update(auth_sessions)
            .where(auth_sessions.c.id == event.originator_id)
            .values(last_refreshed_at=event.timestamp)
        )

    @on(Session.Revoked)
    def _revoked(self, conn: Connection, event: Any) -> None:
        conn.execute(
            update(auth_sessions)
            .where(auth_sessions.c.id == event.originator_id)
            .values(revoked_at=event.timestamp, revoke_reason=event.reason)
        )
