"""Queries on the sessions read model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Engine, Integer, Row, Select, bindparam, select

from projections.queries.keyset import Page, after, decode_cursor, encode_cursor
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


def _session_row(r: Row[Any]) -> SessionRow:
    return SessionRow(
        r.id, r.client, r.client_family, r.created_at, r.last_refreshed_at, r.expires_at
    )


@cache
def _open(after_cursor: bool, limited: bool) -> Select[Any]:
    """The sessions of ``user_id`` still open at ``now``, newest first (ties by id).

    After a cursor (``after_value``, ``after_id``) and ``limit`` of them when asked.
    """
    s = auth_sessions.c
    conditions: list[ColumnElement[bool]] = [
        s.user_id == bindparam("user_id"),
        s.revoked_at.is_(None),
        s.expires_at > bindparam("now"),
    ]
    if after_cursor:
        conditions.append(
            after(s.created_at, s.id, bindparam("after_value"), bindparam("after_id"), desc=True)
        )
    statement = select(auth_sessions).where(*conditions).order_by(s.created_at.desc(), s.id.desc())
    return statement.limit(bindparam("limit", type_=Integer)) if limited else statement


class SessionQueries:
    """Reads ``auth_sessions``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open_sessions(self, user_id: UUID, now: datetime) -> list[SessionRow]:
        """Every one of the user's sessions that is neither revoked nor expired, newest first.

        Unbounded: the HTTP listing pages with :meth:`open_page` instead.
        """
        with self._engine.connect() as conn:
            rows = conn.execute(_open(False, False), {"user_id": user_id, "now": now}).all()
        return [_session_row(r) for r in rows]

    def open_page(
        self, user_id: UUID, now: datetime, *, cursor: str | None, limit: int
    ) -> Page[SessionRow]:
        """A page of the user's open sessions, newest first; a bad cursor is InvalidValue."""
        values: dict[str, Any] = {"user_id": user_id, "now": now, "limit": limit + 1}
        if cursor:
            values["after_value"], values["after_id"] = decode_cursor(cursor, datetime)
        with self._engine.connect() as conn:
            rows = conn.execute(_open(bool(cursor), True), values).all()
        items = [_session_row(r) for r in rows[:limit]]
        next_cursor = None
        # One row more than asked for says there is a next page, without counting.
        if len(rows) > limit:
            next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
        return Page(items, next_cursor)
