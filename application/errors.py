"""Failures of commands and queries, one type per kind.

The interfaces map each type to one HTTP status and error code, in one place.
Domain errors (``domain.errors``) travel through unchanged and are mapped there too.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of the errors the application raises on purpose."""


class NotFound(ApplicationError):
    """The thing asked for does not exist (or is hidden from the caller)."""


class Unauthenticated(ApplicationError):
    """The caller is not signed in, or the credentials are wrong."""


class Forbidden(ApplicationError):
    """The caller is signed in but may not do this."""


class Conflict(ApplicationError):
    """The command clashes with the current state (taken names, stale versions...)."""


class Contention(ApplicationError):
    """The aggregate kept changing under the command: every bounded retry lost the race."""


class PreconditionFailed(ApplicationError):
    """A conditional command (``If-Match``) found the aggregate at another version."""

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version
