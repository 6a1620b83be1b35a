"""Queries on the users read model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import Engine, select

from application.ports import PersonalDataVault
from projections.schema import users


@dataclass(frozen=True)
class PublicProfile:
    """What anyone may see of a user."""

    id: UUID
    username: str
    created_at: datetime
    deleted: bool


@dataclass(frozen=True)
class OwnProfile:
    """What a user sees of themself."""

    id: UUID
    username: str
    email: str | None
    roles: list[str]
    created_at: datetime
    updated_at: datetime


class UserQueries:
    """Reads ``users``."""

    def __init__(self, engine: Engine, vault: PersonalDataVault) -> None:
        self._engine = engine
        self._vault = vault

    def public_profile(self, user_id: UUID) -> PublicProfile | None:
        """The public profile, or None for an unknown id."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users.c.id, users.c.username, users.c.created_at, users.c.deleted).where(
                    users.c.id == user_id
                )
            ).first()
        return (
            None
            if row is None
            else PublicProfile(row.id, row.username, row.created_at, row.deleted)
        )

    def own_profile(self, user_id: UUID) -> OwnProfile | None:
        """The user's own profile, or None when unknown or deleted."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users).where(users.c.id == user_id, users.c.deleted.is_(False))
            ).first()
        if row is None:
            return None
        return OwnProfile(
            row.id,
            row.username,
            # Kept sealed in the read model; unsealed for its owner only.
            None if row.sealed_email is None else self._vault.unseal(row.id, row.sealed_email),
            [r for r in row.roles.split(",") if r],
            row.created_at,
            row.updated_at,
        )
