"""Auditing the event log: the integrity chain, reading history, time travel.

Everything here reads the event store itself, never a read model. Personal
data stays as the log holds it, sealed: audit output never unseals anything,
so the data of an erased user can never appear in clear (see
``docs/erasure.md``).

The chain (how each event is linked to the one before it) is defined here,
next to the code that verifies it; the recorders of ``infrastructure.chain``
write it in the transaction that inserts the events. See ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Notification

from application.errors import NotFound

GENESIS = bytes(32)

Progress = Callable[[int, int], None]
"""Called with (position reached, head of the log) as a long read goes on."""


def link_hash(
    previous: bytes,
    position: int,
    recorded_at: int,
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The chain hash of one event, given the hash of the event before it.

    ``SHA-256(previous | position | recorded_at | originator_id | version | topic | state)``
    with fixed-width integers and length-prefixed strings, so that no two
    different events encode to the same bytes.
    """
    digest = hashlib.sha256(previous)
    oid = str(originator_id).encode()
    top = topic.encode()
    digest.update(struct.pack(">qqI", position, recorded_at, len(oid)))
    digest.update(oid)
    digest.update(struct.pack(">qI", originator_version, len(top)))
    digest.update(top)
    digest.update(struct.pack(">Q", len(state)))
    digest.update(state)
    return digest.digest()


@dataclass(frozen=True)
class Link:
    """One link of the chain: an event's position, when it was recorded, its hash."""

    position: int
    recorded_at: int
    hash: bytes


@dataclass(frozen=True)
class LogEntry:
    """An event of the log, with its link's time and hash (None if it has no link)."""

    notification: Notification
    recorded_at: int | None
    hash: bytes | None


@dataclass(frozen=True)
class LogFilter:
    """Which events of the log to read; every part but ``after`` is optional."""

    after: int = 0
    upto: int | None = None
    originator_id: UUID | None = None
    event_type: str | None = None


class EventLog(Protocol):
    """The event store as the audit side reads it (the chained recorders)."""

    def max_notification_id(self) -> int | None:
        """The head of the log."""
        ...

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Events of the log by position."""
        ...

    def select_links(self, after: int, upto: int | None, limit: int) -> list[Link]:
        """Links with ``after < position <= upto``, in order."""
        ...

    def select_log(self, where: LogFilter, limit: int) -> list[LogEntry]:
        """Events matching ``where``, in log order, with their links."""
        ...

    def position_at(self, instant: int) -> int:
        """The last position recorded at or before ``instant`` (µs since the epoch)."""
        ...

    def version_at(self, originator_id: UUID, instant: int) -> int | None:
        """The aggregate's last version recorded at or before ``instant``."""
        ...


def micros(instant: datetime) -> int:
    """A timezone-aware instant as microseconds since the epoch."""
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """Microseconds since the epoch as a UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def jsonable(value: Any) -> Any:
    """``value`` made of JSON types only (ids and times as strings, sets sorted)."""
    match value:
        case None | bool() | int() | float() | str():
            return value
        case UUID() | Decimal():
            return str(value)
        case datetime() | date():
            return value.isoformat()
        case timedelta():
            return value.total_seconds()
        case enum.Enum():
            return jsonable(value.value)
        case bytes():
            return base64.b64encode(value).decode()
        case Mapping():
            return {str(k): jsonable(v) for k, v in value.items()}
        case set() | frozenset():
            return sorted((jsonable(v) for v in value), key=str)
        case list() | tuple():
            return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__"):
        return {k: jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of recomputing the chain."""

    ok: bool
    checked: int
    first_broken_position: int | None
    reason: str | None
    head_position: int
    head_hash: str | None


@dataclass(frozen=True)
class AuditEvent:
    """One event as auditors see it: its place in the log and its fields, still sealed."""

    position: int
    aggregate_id: UUID
    version: int
    type: str
    topic: str
    recorded_at: datetime | None
    hash: str | None
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The event as one JSON object (as the API and the export write it)."""
        result: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return result


@dataclass(frozen=True)
class AuditPage:
    """A page of the log, and the cursor (a position) of the next one."""

    items: list[AuditEvent]
    next_cursor: str | None


@dataclass(frozen=True)
class AggregateState:
    """An aggregate as it was at some version."""

    aggregate_id: UUID
    version: int
    type: str
    created_on: datetime
    modified_on: datetime
    state: dict[str, Any]


class _Broken(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


class Audit:
    """Reads and checks the log of one application (its event store, its mapper)."""

    def __init__(self, log: EventLog, app: Application[UUID], batch_size: int = 1000) -> None:
        self._log = log
        self._app = app
        self._batch = max(1, batch_size)

    # -- integrity -------------------------------------------------------------

    def verify(
        self, anchor: tuple[int, bytes] | None = None, progress: Progress | None = None
    ) -> VerifyReport:
        """Recompute the chain over the whole log, one batch at a time (constant memory).

        ``anchor`` is a (position, hash) pair recorded earlier from a report's
        head: it must still be there, unchanged. That catches what no chain can
        see from inside the database: a log cut short, or rewritten as a whole.
        """
        head = self._log.max_notification_id() or 0
        previous, position, checked = GENESIS, 0, 0
        events: Sequence[Notification] = []
        try:
            while True:
                events = self._log.select_notifications(
                    start=position, limit=self._batch, inclusive_of_start=False
                )
                upto = events[-1].id if events else None
                links = self._log.select_links(position, upto, self._batch + 1)
                if not events:
                    if links:
                        raise _Broken(
                            links[0].position, "a link has no event: the event was deleted"
                        )
                    break
                previous = self._check_batch(events, links, previous, anchor)
                checked += len(events)
                position = events[-1].id
                events = []
                if progress is not None:
                    progress(position, max(head, position))
            if anchor is not None and anchor[0] > position:
                raise _Broken(position + 1, "the log ends before the anchor: it was cut short")
        except _Broken as broken:
            checked += sum(1 for event in events if event.id < broken.position)
            return VerifyReport(False, checked, broken.position, broken.reason, head, None)
        return VerifyReport(
            True, checked, None, None, position, previous.hex() if position else None
        )

    @staticmethod
    def _check_batch(
        events: Sequence[Notification],
        links: Sequence[Link],
        previous: bytes,
        anchor: tuple[int, bytes] | None,
    ) -> bytes:
        by_event = {event.id: event for event in events}
        by_link = {link.position: link for link in links}
        # Walk both in log order, so the first anomaly found is the first of the log.
        for position in sorted(by_event.keys() | by_link.keys()):
            event = by_event.get(position)
            link = by_link.get(position)
            if event is None:
                raise _Broken(position, "a link has no event: the event was deleted")
            if link is None:
                raise _Broken(position, "an event has no link: it was added outside the log")
            if not isinstance(event.state, bytes):
                # SQLite turns a blob edited as text into text: that is an edit too.
                raise _Broken(position, "the stored event is not bytes: it was changed")
            expected = link_hash(
                previous,
                event.id,
                link.recorded_at,
                event.originator_id,
                event.originator_version,
                event.topic,
                event.state,
            )
            if expected != link.hash:
                raise _Broken(event.id, "the hash does not match: an event was changed or removed")
            if anchor is not None and anchor[0] == event.id and anchor[1] != link.hash:
                raise _Broken(event.id, "the anchor's hash differs: the log was rewritten")
            previous = link.hash
        return previous

    # -- history ---------------------------------------------------------------

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 50,
        event_type: str | None = None,
        aggregate_id: UUID | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> AuditPage:
        """A page of the log by position, filtered by type, aggregate and recording time."""
        where = self._filter(after, event_type, aggregate_id, start, end)
        if where is None:
            return AuditPage([], None)
        entries = self._log.select_log(where, limit + 1)
        items = [self._audit_event(entry) for entry in entries[:limit]]
        more = len(entries) > limit
        return AuditPage(items, str(items[-1].position) if more and items else None)

    def stream(self, progress: Progress | None = None) -> Iterator[AuditEvent]:
        """Every event of the log in order, read in batches (constant memory)."""
        head = self._log.max_notification_id() or 0
        position = 0
        while True:
            entries = self._log.select_log(LogFilter(after=position), self._batch)
            if not entries:
                return
            for entry in entries:
                yield self._audit_event(entry)
            position = entries[-1].notification.id
            if progress is not None:
                progress(position, max(head, position))

    def _filter(
        self,
        after: int,
        event_type: str | None,
        aggregate_id: UUID | None,
        start: datetime | None,
        end: datetime | None,
    ) -> LogFilter | None:
        # ``recorded_at`` never decreases along the log, so a time range is a
        # range of positions.
        if start is not None:
            after = max(after, self._log.position_at(micros(start) - 1))
        upto = None if end is None else self._log.position_at(micros(end))
        if upto is not None and upto <= after:
            return None
        return LogFilter(after, upto, aggregate_id, event_type)

    def _audit_event(self, entry: LogEntry) -> AuditEvent:
        notification = entry.notification
        return AuditEvent(
            position=notification.id,
            aggregate_id=UUID(str(notification.originator_id)),
            version=notification.originator_version,
            type=notification.topic.rpartition(":")[2],
            topic=notification.topic,
            recorded_at=None if entry.recorded_at is None else from_micros(entry.recorded_at),
            hash=None if entry.hash is None else entry.hash.hex(),
            data=self._data(notification),
        )

    def _data(self, notification: Notification) -> dict[str, Any]:
        mapper = self._app.mapper
        fields: dict[str, Any]
        try:
            # Decoding runs the upcasters, so old events show in today's shape.
            fields = dict(vars(mapper.to_domain_event(notification)))
        except Exception:  # noqa: BLE001 - a class that no longer exists: show what is stored
            try:
                fields = dict(mapper.transcoder.decode(notification.state))
            except Exception:  # noqa: BLE001 - unreadable bytes are reported, not raised
                return {"undecodable": True}
        fields.pop("originator_id", None)
        fields.pop("originator_version", None)
        result: dict[str, Any] = jsonable(fields)
        return result

    # -- time travel -----------------------------------------------------------

    def state(
        self, aggregate_id: UUID, *, version: int | None = None, at: datetime | None = None
    ) -> AggregateState:
        """The aggregate rebuilt from its events up to ``version`` or the instant ``at``."""
        if at is not None:
            version = self._log.version_at(aggregate_id, micros(at))
            if version is None:
                raise NotFound("the aggregate did not exist yet at that time")
        try:
            aggregate: Any = self._app.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("no aggregate has this id") from None
        public = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
        return AggregateState(
            aggregate_id=aggregate_id,
            version=aggregate.version,
            type=type(aggregate).__qualname__,
            created_on=aggregate.created_on,
            modified_on=aggregate.modified_on,
            state=jsonable(public),
        )
