"""The system clock adapter."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """:class:`application.ports.Clock` reading the system time."""

    def now(self) -> datetime:
        """Now, in UTC."""
        return datetime.now(UTC)
