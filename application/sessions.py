"""Sign-in sessions: open, rotate the refresh token, revoke."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from application.errors import NotFound, Unauthenticated
from application.unit_of_work import Committed, UnitOfWork
from application.users import UserCommands
from domain.errors import RefreshTokenReused, SessionRevoked
from domain.sessions import Session
from domain.users import User


@dataclass(frozen=True)
class SignedIn:
    """A session just opened or refreshed, with the one copy of its refresh token."""

    session_id: UUID
    user_id: UUID
    username: str
    roles: frozenset[str]
    refresh_token: str
    refresh_expires_at: datetime


def _hash(secret: str) -> str:
    # Refresh tokens are long random strings: a fast hash is enough, no salt needed.
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _parse(refresh_token: str) -> tuple[UUID, str]:
    session_part, _, secret = refresh_token.partition(".")
    try:
        return UUID(hex=session_part), secret
    except ValueError:
        raise Unauthenticated("invalid refresh token") from None


class SessionCommands(UserCommands):
    """Session commands. Refresh tokens are ``<session id>.<secret>``; only hashes are kept."""

    def open_session(self, username: str, password: str, client: str) -> Committed[SignedIn]:
        """Check the credentials and open a session for them."""
        account = self.authenticate(username, password)
        secret = _new_secret()
        session_id = uuid4()
        expires_at = self._clock.now() + self._rules.refresh_token_ttl

        def decide(uow: UnitOfWork) -> SignedIn:
            uow.add(Session.open(session_id, account.id, _hash(secret), expires_at, client[:200]))
            return SignedIn(
                session_id,
                account.id,
                account.username,
                account.roles,
                f"{session_id.hex}.{secret}",
                expires_at,
            )

        return self._runner.run(decide)

    def refresh_session(self, refresh_token: str) -> Committed[SignedIn]:
        """Rotate the refresh token. Reuse of a rotated token revokes the session."""
        session_id, presented = _parse(refresh_token)
        secret = _new_secret()
        now = self._clock.now()

        def decide(uow: UnitOfWork) -> SignedIn | None:
            session = uow.find(Session, session_id)
            if session is None:
                raise Unauthenticated("invalid refresh token")
            user = uow.find(User, session.user_id)
            if user is None or user.deleted:
                session.revoke("account_deleted")
                return None
            try:
                session.rotate(_hash(presented), _hash(secret), now)
            except RefreshTokenReused:
                return None  # the revocation is saved; the caller is refused below
            except SessionRevoked:
                raise Unauthenticated("this session is closed") from None
            username = self._vault.unseal(user.id, user.sealed_username) or ""
            return SignedIn(
                session_id,
                user.id,
                username,
                frozenset(user.roles),
                f"{session_id.hex}.{secret}",
                session.expires_at,
            )

        committed = self._runner.run(decide)
        if committed.value is None:
            raise Unauthenticated("this refresh token was already used; the session is revoked")
        return Committed(committed.value, committed.position)

    def session_is_open(self, session_id: UUID) -> bool:
        """True while the session can still be used."""
        return self.session_expiry(session_id) is not None

    def session_expiry(self, session_id: UUID) -> datetime | None:
        """When the session ends if it is open now; None when it is closed or unknown.

        Sliding renewal uses it so that no access token outlives its session.
        """
        session = UnitOfWork(self._runner.app).find(Session, session_id)
        if session is None or not session.is_open(self._clock.now()):
            return None
        return session.expires_at

    def revoke_session(self, user_id: UUID, session_id: UUID, reason: str) -> Committed[UUID]:
        """Close one of the user's sessions; someone else's is :class:`NotFound`."""

        def decide(uow: UnitOfWork) -> UUID:
            session = uow.find(Session, session_id)
            if session is None or session.user_id != user_id:
                raise NotFound("session not found")
            session.revoke(reason)
            return session_id

        return self._runner.run(decide)

    def end_session(self, refresh_token: str) -> Committed[UUID | None]:
        """Log out with the refresh token: revokes its session if the token is current."""
        session_id, presented = _parse(refresh_token)

        def decide(uow: UnitOfWork) -> UUID | None:
            session = uow.find(Session, session_id)
            if session is None or session.token_hash != _hash(presented):
                return None
            session.revoke("logout")
            return session_id

        return self._runner.run(decide)
