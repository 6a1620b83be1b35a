"""Named failures of domain rules. The interfaces map each kind to one HTTP error."""

from __future__ import annotations


class DomainError(Exception):
    """A domain rule refused a command."""


class InvalidValue(DomainError):
    """A value breaks a format or length rule; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AlreadyClaimed(DomainError):
    """A unique name (username, email, content hash...) belongs to someone else."""

    def __init__(self, kind: str, owner_id: object) -> None:
        super().__init__(f"this {kind} is already taken")
        self.kind = kind
        self.owner_id = owner_id


class NotPermitted(DomainError):
    """The actor may not do this to this aggregate."""


class Gone(DomainError):
    """The aggregate was deleted; it accepts no more commands."""


class SessionRevoked(DomainError):
    """The session is closed: revoked, logged out or expired."""


class RefreshTokenReused(DomainError):
    """A refresh token that was already rotated was presented again.

    This is the signature of a stolen token: the session is revoked as a whole.
    """


class NoSuchPart(DomainError):
    """The command names a part the aggregate does not hold (a playlist entry...)."""


class StateConflict(DomainError):
    """The aggregate's current state refuses the command (a full playlist, an ended playback)."""


class LimitReached(StateConflict):
    """A configured maximum (entries in a playlist...) would be exceeded."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
