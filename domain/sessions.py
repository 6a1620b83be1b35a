"""Sign-in sessions and their rotating refresh tokens."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import RefreshTokenReused, SessionRevoked


class Session(Aggregate):
    """One signed-in device or client of one user.

    Only hashes of refresh tokens are kept. Every refresh rotates the token; a
    hash seen before but no longer current means a copy of an old token is in
    someone else's hands, so the whole session is revoked.
    """

    class Opened(Aggregate.Created):
        """A user signed in."""

        user_id: UUID
        token_hash: str
        expires_at: datetime
        client: str

    class Rotated(Aggregate.Event):
        """The refresh token was swapped for a new one."""

        new_hash: str

    class Revoked(Aggregate.Event):
        """The session was closed."""

        reason: str

    @classmethod
    def open(
        cls, session_id: UUID, user_id: UUID, token_hash: str, expires_at: datetime, client: str
    ) -> Session:
        """A new session with the hash of its first refresh token."""
        return cls._create(
            cls.Opened,
            id=session_id,
            user_id=user_id,
            token_hash=token_hash,
            expires_at=expires_at,
            client=client,
        )

    @event(Opened)
    def __init__(self, user_id: UUID, token_hash: str, expires_at: datetime, client: str) -> None:
        self.user_id = user_id
        self.token_hash = token_hash
        self.used_hashes: list[str] = []
        self.expires_at = expires_at
        self.client = client
        self.revoked = False

    def is_open(self, now: datetime) -> bool:
        """True while the session is neither revoked nor expired."""
        return not self.revoked and now < self.expires_at

    def rotate(self, presented_hash: str, new_hash: str, now: datetime) -> None:
        """Swap the presented (current) token for a new one.

        A presented token that was already rotated revokes the session and
        raises :class:`RefreshTokenReused`; the caller must still save the
        revocation.
        """
        if presented_hash in self.used_hashes:
            if not self.revoked:
                self._revoked(reason="refresh_token_reused")
            raise RefreshTokenReused("this refresh token was already used")
        if not self.is_open(now) or presented_hash != self.token_hash:
            raise SessionRevoked("this session is closed")
        self._rotated(new_hash=new_hash)

    @event(Rotated)
    def _rotated(self, new_hash: str) -> None:
        self.used_hashes.append(self.token_hash)
        self.token_hash = new_hash

    def revoke(self, reason: str) -> None:
        """Close the session; closing a closed session records nothing."""
        if not self.revoked:
            self._revoked(reason=reason)

    @event(Revoked)
    def _revoked(self, reason: str) -> None:
        self.revoked = True
