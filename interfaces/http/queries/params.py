"""Query-string types several routes share, bounded where they are parsed.

A value that parses but that the code behind a route cannot hold (an instant
near year 1 or 9999, where ``astimezone`` or a day's arithmetic overflows; a
position past the signed 64-bit columns of both backends) is refused here, as
a 422 ``validation_error`` naming the field, instead of overflowing deep in a
query as a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from infrastructure.bootstrap import Container
from interfaces.http.errors import ApiError

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
MAX_POSITION = 2**63 - 1


def utc_instant(value: datetime) -> datetime:
    """``value`` in UTC, a time without a zone being UTC already; refused outside the range.

    The range (1970 to 9000) holds every time the service records, and leaves
    years of room on both sides for the windows and buckets computed from it.
    """
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    # Aware datetimes compare without overflowing, unlike astimezone: check first.
    if not EARLIEST <= moment <= LATEST:
        raise PydanticCustomError(
            "datetime_out_of_range",
            "must be between {earliest} and {latest}",
            {"earliest": "1970-01-01T00:00:00Z", "latest": "9000-12-31T23:59:59Z"},
        )
    return moment.astimezone(UTC)


# An instant in the query string, as an aware UTC datetime within the range above.
Instant = Annotated[datetime, AfterValidator(utc_instant)]

# A position in the event log (or an aggregate's version): a BIGINT on
# PostgreSQL and a 64-bit INTEGER on SQLite, whose driver raises OverflowError
# on binding anything larger.
Position = Annotated[int, Field(ge=0, le=MAX_POSITION)]

# Paging of every list (API.md, Pagination): an opaque cursor, and a limit
# whose default and cap are settings (see page_limit).
Cursor = Annotated[str | None, Query(max_length=1000)]
Limit = Annotated[int | None, Query(ge=1)]


def page_limit(limit: int | None, container: Container) -> int:
    """The page size: the default when absent, 422 above the configured cap."""
    settings = container.settings
    if limit is None:
        return settings.page_limit_default
    if limit > settings.page_limit_max:
        message = f"must be at most {settings.page_limit_max}"
        raise ApiError(
            422,
            "validation_error",
            f"limit: {message}",
            fields=[{"field": "limit", "message": message}],
        )
    return limit
