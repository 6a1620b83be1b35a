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


class UnsupportedMedia(ApplicationError):
    """An uploaded file's content is not one of the accepted audio types.

    ``mime_type`` is what the content was judged to be (never what the client said).
    """

    def __init__(self, message: str, mime_type: str | None) -> None:
        super().__init__(message)
        self.mime_type = mime_type


class CorruptMedia(ApplicationError):
    """The content looks like an accepted audio type but does not parse as one."""


class DuplicateTrack(Conflict):
    """The same bytes were already uploaded; ``existing_track_id`` is that track."""

    def __init__(self, existing_track_id: object) -> None:
        super().__init__("this audio file was already uploaded")
        self.existing_track_id = existing_track_id


class StorageUnavailable(ApplicationError):
    """Blob storage failed, timed out, or its circuit breaker is open.

    ``retry_after`` is how many seconds a client should wait before trying again.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BlobNotFound(ApplicationError):
    """No blob is stored under the key (not a storage failure)."""
