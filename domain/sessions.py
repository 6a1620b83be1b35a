"""Sign-in sessions and their rotating refresh tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import RefreshTokenReused, SessionRevoked

# (marker in the user agent, family), first match wins: Edge and Opera also say
# "Chrome", Chrome also says "Safari".
_FAMILIES_V2 = (
    ("edg/", "Edge"),
    ("edge/", "Edge"),
    ("opr/", "Opera"),
    ("opera", "Opera"),
    ("firefox/", "Firefox"),
    ("fxios/", "Firefox"),
    ("crios/", "Chrome"),
    ("chromium/", "Chrome"),
    ("chrome/", "Chrome"),
    ("safari/", "Safari"),
    ("curl/", "curl"),
    ("python", "Python"),
    ("okhttp", "Android app"),
    ("cfnetwork", "iOS app"),
)


def client_family_v2(client: str) -> str:
    """The family of the client a user agent names (``Firefox``, ``curl``... or ``other``).

    Frozen: the upcaster of ``Session.Opened`` v1 events applies it to old
    events, so changing it would make old and new sessions disagree. A better
    classifier is a new function and a version 3 of the event.
    """
    agent = client.lower()
    for marker, family in _FAMILIES_V2:
        if marker in agent:
            return family
    return "other"


class Session(Aggregate):
    """One signed-in device or client of one user.

    Only hashes of refresh tokens are kept. Every refresh rotates the token; a
    hash seen before but no longer current means a copy of an old token is in
    someone else's hands, so the whole session is revoked.
    """

    class Opened(Aggregate.Created):
        """A user signed in.

        Version 2 added ``client_family`` (the browser or tool, from the user
        agent), so that session lists can name the device. Version 1 events
        are upcast when read: the family is derived from their ``client``.
        """

        class_version = 2

        user_id: UUID
        token_hash: str
        expires_at: datetime
        client: str
        client_family: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Add ``client_family``, derived from the user agent v1 events kept."""
            state["client_family"] = client_family_v2(state["client"])

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
            client_family=client_family_v2(client),
        )

    @event(Opened)
    def __init__(
        self,
        user_id: UUID,
        token_hash: str,
        expires_at: datetime,
        client: str,
        client_family: str,
    ) -> None:
        self.user_id = user_id
        self.token_hash = token_hash
        self.used_hashes: list[str] = []
        self.expires_at = expires_at
        self.client = client
        self.client_family = client_family
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
