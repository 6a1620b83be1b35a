"""Queries on the sessions read model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Engine, select

from projections.schema import auth_sessions


@dataclass(frozen=True)
class SessionRow:
    """One sign-in session as listed to its user."""

    id: UUID
    client: str
    client_family: str
    created_at: datetime
    last_refreshed_at: datetime | None
    expires_at: datetime


class SessionQueries:
    """Reads ``auth_sessions``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open_sessions(self, user_id: UUID, now: datetime) -> list[SessionRow]:
        """The user's sessions that are neither revoked nor expired, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(auth_sessions)
                .where(
                    auth_sessions.c.user_id == user_id,
                    auth_sessions.c.revoked_at.is_(None),
                    auth_sessions.c.expires_at > now,
                )
                .order_by(auth_sessions.c.created_at.desc())
            ).all()
        return [
            SessionRow(
                r.id, r.client, r.client_family, r.created_at, r.last_refreshed_at, r.expires_at
            )
            for r in rows
        ]
