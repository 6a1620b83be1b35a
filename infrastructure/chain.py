"""The tamper-evident event log: a hash chain written with the events, and audit reads.

Each event of the log gets one row (a link) in ``event_chain``::

    hash(n) = SHA-256(hash(n-1) | n | recorded_at(n) | originator_id | version | topic | state)

(see :func:`application.audit.link_hash`; ``hash(0)`` is 32 zero bytes). The row is inserted by the
recorder in the very transaction that inserts the event, so a committed event
always has its link. The chain follows commit order: on PostgreSQL the library
already takes an EXCLUSIVE lock on the events table around each insert (so
positions are handed out and committed one transaction at a time); on SQLite
there is a single writer. ``recorded_at`` (microseconds since the epoch, never
decreasing along the log) is when the log recorded the event; it is covered by
the hash and indexed, so time ranges of the log map to position ranges.

Flipping a byte of a stored event changes its hash; deleting an event leaves
its link without an event (or, if the link is deleted too, breaks the next
link). Someone able to rewrite the database could recompute the whole chain:
against that, keep the head hash that ``audit verify`` reports somewhere else
and check it later as an anchor (see ``docs/audit.md``).

The two recorders also answer the audit reads that the library's interface
has no words for (filters by type, aggregate and time, the links): they
implement :class:`application.audit.EventLog`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier

from application.audit import GENESIS, EventLog, Link, LogEntry, LogFilter, link_hash

CHAIN_TABLE = "event_chain"


class ChainTailMismatch(DatabaseError):
    """The chain's last link is not before the new events: the log was tampered with.

    Deliberately not an IntegrityError, so that command runners do not take it
    for a lost race and retry.
    """


def now_micros() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def _chain_rows(
    tail: Link | None, now: int, positions: Sequence[int], events: Sequence[StoredEvent]
) -> list[tuple[int, int, bytes]]:
    if tail is not None and positions and tail.position >= min(positions):
        raise ChainTailMismatch(
            f"the chain ends at position {tail.position}, after the new events: "
            "the event log was altered; run `theplaylist audit verify`"
        )
    previous = GENESIS if tail is None else tail.hash
    # Never decreasing along the log, whatever the clocks do.
    recorded_at = now if tail is None else max(now, tail.recorded_at)
    rows = []
    for position, stored in sorted(zip(positions, events, strict=True), key=lambda p: p[0]):
        previous = link_hash(
            previous,
            position,
            recorded_at,
            stored.originator_id,
            stored.originator_version,
            stored.topic,
            stored.state,
        )
        rows.append((position, recorded_at, previous))
    return rows


def _rendered(statement: Composable) -> bytes:
    """``statement`` as the bytes sent, for the statements run with every batch.

    psycopg renders a composed statement again on every execute (identifiers
    quoted and all): 3-8% of a save's CPU (timed, 16- and 1-event saves).
    """
    return statement.as_bytes(None)


def _like_pattern(event_type: str) -> str:
    """A LIKE pattern for topics of this type (``module:Type`` ends with ``:Type``)."""
    escaped = event_type.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%:{escaped}"


def _glob_pattern(event_type: str) -> str:
    """A GLOB pattern for topics of this type, its wildcards taken literally."""
    escaped = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in event_type)
    return f"*:{escaped}"


class ChainedSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The SQLite application recorder, plus the chain and the audit reads."""

    def construct_create_table_statements(self) -> list[str]:
        """The library's events table, and the chain with its time index."""
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS event_chain ("
            "notification_id INTEGER PRIMARY KEY, "
            "recorded_at INTEGER NOT NULL, "
            "hash BLOB NOT NULL)",
            "CREATE INDEX IF NOT EXISTS event_chain_recorded_at_idx "
            "ON event_chain (recorded_at, notification_id)",
        ]

    def create_table(self) -> None:
        """Create the tables; a log that predates the chain is chained once, here."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (CHAIN_TABLE,))
            existed = c.fetchone() is not None
        super().create_table()
        if not existed:
            self._chain_existing_events()

    def _chain_existing_events(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            # A write first: the transaction then holds the write lock throughout.
            c.execute("DELETE FROM event_chain WHERE 0")
            tail = self._tail(c)
            after = 0 if tail is None else tail.position
            while True:
                c.execute(
                    f"SELECT rowid, * FROM {self.events_table_name} "  # noqa: S608 - library's name
                    "WHERE rowid > ? ORDER BY rowid LIMIT 1000",
                    (after,),
                )
                rows = c.fetchall()
                if not rows:
                    return
                events = [self._stored(row) for row in rows]
                links = _chain_rows(tail, now_micros(), [r["rowid"] for r in rows], events)
                c.executemany("INSERT INTO event_chain VALUES (?,?,?)", links)
                tail = Link(*links[-1])
                after = tail.position

    def _stored(self, row: Any) -> StoredEvent:
        return StoredEvent(
            originator_id=self.convert_originator_id(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"],
        )

    @staticmethod
    def _tail(c: SQLiteCursor) -> Link | None:
        c.execute(
            "SELECT notification_id, recorded_at, hash FROM event_chain "
            "ORDER BY notification_id DESC LIMIT 1"
        )
        row = c.fetchone()
        return None if row is None else Link(row[0], row[1], bytes(row[2]))

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None
        if stored_events:
            links = _chain_rows(self._tail(c), now_micros(), positions, stored_events)
            c.executemany("INSERT INTO event_chain VALUES (?,?,?)", links)
        return positions

    def select_events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of each aggregate after the version given for it, in version order."""
        # One indexed read per aggregate: in-process, SQLite has no round trip to save.
        return [
            stored
            for originator_id, version in versions.items()
            for stored in self.select_events(originator_id, gt=version)
        ]

    def select_links(self, after: int, upto: int | None, limit: int) -> list[Link]:
        """Chain rows with ``after < position <= upto``, in order."""
        sql = "SELECT notification_id, recorded_at, hash FROM event_chain WHERE notification_id > ?"
        params: list[Any] = [after]
        if upto is not None:
            sql += " AND notification_id <= ?"
            params.append(upto)
        sql += " ORDER BY notification_id LIMIT ?"
        params.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [Link(r[0], r[1], bytes(r[2])) for r in c.fetchall()]

    def select_log(self, where: LogFilter, limit: int) -> list[LogEntry]:
        """Events matching ``where``, in log order, with their recording time."""
        # The table name is the library's own, never input.
        sql = (
            "SELECT e.rowid AS position, e.originator_id, e.originator_version, e.topic, "  # noqa: S608
            f"e.state, c.recorded_at, c.hash FROM {self.events_table_name} e "
            "LEFT JOIN event_chain c ON c.notification_id = e.rowid WHERE e.rowid > ?"
        )
        params: list[Any] = [where.after]
        if where.upto is not None:
            sql += " AND e.rowid <= ?"
            params.append(where.upto)
        if where.originator_id is not None:
            sql += " AND e.originator_id = ?"
            params.append(where.originator_id.hex)
        if where.event_type is not None:
            # GLOB, not LIKE: type names are case-sensitive.
            sql += " AND (e.topic = ? OR e.topic GLOB ?)"
            params += [where.event_type, _glob_pattern(where.event_type)]
        sql += " ORDER BY e.rowid LIMIT ?"
        params.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [
                LogEntry(
                    Notification(
                        id=r["position"],
                        originator_id=self.convert_originator_id(r["originator_id"]),
                        originator_version=r["originator_version"],
                        topic=r["topic"],
                        state=r["state"],
                    ),
                    r["recorded_at"],
                    None if r["hash"] is None else bytes(r["hash"]),
                )
                for r in c.fetchall()
            ]

    def position_at(self, instant: int) -> int:
        """The last position recorded at or before ``instant`` (0 if none)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT MAX(notification_id) FROM event_chain WHERE recorded_at <= ?",
                (instant,),
            )
            return int(c.fetchone()[0] or 0)

    def version_at(self, originator_id: UUID, instant: int) -> int | None:
        """The aggregate's last version recorded at or before ``instant``."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT MAX(e.originator_version) FROM {self.events_table_name} e "  # noqa: S608
                "JOIN event_chain c ON c.notification_id = e.rowid "
                "WHERE e.originator_id = ? AND c.recorded_at <= ?",
                (originator_id.hex, instant),
            )
            value = c.fetchone()[0]
            return None if value is None else int(value)


class ChainedPostgresApplicationRecorder(PostgresApplicationRecorder):
    """The PostgreSQL application recorder, plus the chain and the audit reads."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        if datastore.enable_db_functions:
            # That path inserts through a database function and would skip the chain.
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS is not supported with the chain")
        schema = Identifier(datastore.schema)
        chain = Identifier(CHAIN_TABLE)
        self._events = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self._chain = SQL("{}.{}").format(schema, chain)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "notification_id bigint PRIMARY KEY, "
                "recorded_at bigint NOT NULL, "
                "hash bytea NOT NULL)"
            ).format(self._chain),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (recorded_at, notification_id)").format(
                Identifier("event_chain_recorded_at_idx"), self._chain
            ),
        ]
        # Positions come back with their event's key, so each link pairs with its event.
        # One plain array per column, sent in binary (%b): psycopg dumps the library's
        # array of a composite type field by field in Python, and escapes a text bytea
        # array byte by byte (timeit, 32 events of 150 bytes: 4.2 ms in text, 9 us so).
        self.insert_events_statement = SQL(
            "INSERT INTO {events} AS t (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id, originator_id, originator_version"
        ).format(events=self._events, id_type=Identifier(datastore.originator_id_type))
        self._insert_events_sql = _rendered(self.insert_events_statement)
        self._notify_statement = _rendered(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
        # The database's clock: one clock for every writer process.
        self._tail_statement = _rendered(
            SQL(
                "SELECT c.notification_id, c.recorded_at, c.hash, "
                "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now "
                "FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
                "SELECT * FROM {} ORDER BY notification_id DESC LIMIT 1) AS c ON true"
            ).format(self._chain)
        )
        # A batch's links in one statement (executemany pipelines one per link).
        self._insert_links = _rendered(
            SQL(
                "INSERT INTO {} SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bytea[])"
            ).format(self._chain)
        )
        # Many aggregates' newer events in one round trip, each an index range scan.
        # OFFSET 0 keeps the subquery from being flattened into a join: as one, the
        # prepared (generic) plan, guessing ten ids and a third of each history,
        # hash-joined a scan of the whole table (measured under the bench's load:
        # 2.2-2.5 ms a batch on 17,000 events, growing with the log; 0.23 ms so).
        self._select_events_after = _rendered(
            SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest(%b::{id_type}[], %b::bigint[]) AS w(id, after) "
                "CROSS JOIN LATERAL (SELECT * FROM {events} "
                "WHERE originator_id = w.id AND originator_version > w.after OFFSET 0) AS e "
                "ORDER BY e.originator_id, e.originator_version"
            ).format(id_type=Identifier(datastore.originator_id_type), events=self._events)
        )
        self.lock_table_statements = [
            _rendered(q) if isinstance(q, Composable) else q for q in self.lock_table_statements
        ]

    def create_table(self) -> None:
        """Create the tables; a log that predates the chain is chained once, here."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS present",
                (f"{self.datastore.schema}.event_chain",),
            )
            row = curs.fetchone()
            existed = bool(row and row["present"])
        super().create_table()
        if not existed:
            self._chain_existing_events()

    def _chain_existing_events(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            while True:
                tail, now = self._tail(curs)
                after = 0 if tail is None else tail.position
                curs.execute(
                    SQL(
                        "SELECT notification_id, originator_id, originator_version, topic, "
                        "state FROM {} WHERE notification_id > %s "
                        "ORDER BY notification_id LIMIT 1000"
                    ).format(self._events),
                    (after,),
                )
                rows = curs.fetchall()
                if not rows:
                    return
                events = [self._stored(r) for r in rows]
                links = _chain_rows(tail, now, [r["notification_id"] for r in rows], events)
                self._write_links(curs, links)

    @staticmethod
    def _stored(row: DictRow) -> StoredEvent:
        return StoredEvent(
            row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"])
        )

    def _tail(self, curs: Cursor[DictRow]) -> tuple[Link | None, int]:
        curs.execute(self._tail_statement, prepare=True)
        return self._tail_from(curs)

    @staticmethod
    def _tail_from(curs: Cursor[DictRow]) -> tuple[Link | None, int]:
        row = curs.fetchone()
        assert row is not None
        if row["notification_id"] is None:
            return None, int(row["now"])
        return Link(row["notification_id"], row["recorded_at"], bytes(row["hash"])), int(row["now"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events and their links in one transaction, in two round trips.

        The library's version opens a ``transaction()`` inside its pipeline, whose
        BEGIN is a round trip of its own, then syncs to read the positions, and once
        more to commit: four round trips a batch, each also a wait for the GIL in a
        busy server. Here the positions and the chain's tail come back with the
        first sync; the links and the COMMIT go with the second.
        """
        if not stored_events:
            return None
        failed: Exception | None = None
        positions: list[int] = []
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.cursor() as curs, conn.cursor() as tail:
                try:
                    curs.execute("BEGIN")
                    self._insert_stored_events(curs, stored_events)
                    tail.execute(self._tail_statement, prepare=True)
                    # A lost race (a version taken) is raised here, before any link is made.
                    pipeline.sync()
                    positions = self._positions(curs, stored_events)
                    links = _chain_rows(*self._tail_from(tail), positions, stored_events)
                    self._write_links(curs, links)
                    curs.execute("COMMIT")
                except Exception as error:  # noqa: BLE001 - raised after the pipeline, as the library does
                    failed = error
            if failed is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                raise failed
        return positions

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # As the library's: the table lock orders commits like positions, the
        # NOTIFY wakes the projectors; then the events, column by column.
        self._lock_table(curs)
        curs.execute(self._notify_statement, prepare=True)
        curs.execute(
            self._insert_events_sql,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    @staticmethod
    def _positions(curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> list[int]:
        """The positions the insert returned, in the order of ``stored_events``."""
        returned = {
            (row["originator_id"], row["originator_version"]): row["notification_id"]
            for row in curs.fetchall()
        }
        return [returned[(s.originator_id, s.originator_version)] for s in stored_events]

    def _write_links(self, curs: Cursor[DictRow], links: list[tuple[int, int, bytes]]) -> None:
        if not links:
            return
        positions, times, hashes = (list(column) for column in zip(*links, strict=True))
        curs.execute(self._insert_links, (positions, times, hashes), prepare=True)

    def _query(self, sql: Composed, params: Sequence[Any]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, params)
            return curs.fetchall()

    def select_events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of each aggregate after the version given for it, in one query."""
        if not versions:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self._select_events_after, [list(versions), list(versions.values())], prepare=True
            )
            return [self._stored(r) for r in curs.fetchall()]

    def select_links(self, after: int, upto: int | None, limit: int) -> list[Link]:
        """Chain rows with ``after < position <= upto``, in order."""
        sql = SQL(
            "SELECT notification_id, recorded_at, hash FROM {} WHERE notification_id > %s"
        ).format(self._chain)
        params: list[Any] = [after]
        if upto is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(upto)
        sql += SQL(" ORDER BY notification_id LIMIT %s")
        params.append(limit)
        return [
            Link(r["notification_id"], r["recorded_at"], bytes(r["hash"]))
            for r in self._query(sql, params)
        ]

    def select_log(self, where: LogFilter, limit: int) -> list[LogEntry]:
        """Events matching ``where``, in log order, with their recording time."""
        sql = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, "
            "e.state, c.recorded_at, c.hash FROM {} e LEFT JOIN {} c "
            "ON c.notification_id = e.notification_id WHERE e.notification_id > %s"
        ).format(self._events, self._chain)
        params: list[Any] = [where.after]
        if where.upto is not None:
            sql += SQL(" AND e.notification_id <= %s")
            params.append(where.upto)
        if where.originator_id is not None:
            sql += SQL(" AND e.originator_id = %s")
            params.append(where.originator_id)
        if where.event_type is not None:
            sql += SQL(" AND (e.topic = %s OR e.topic LIKE %s)")
            params += [where.event_type, _like_pattern(where.event_type)]
        sql += SQL(" ORDER BY e.notification_id LIMIT %s")
        params.append(limit)
        return [
            LogEntry(
                Notification(
                    id=r["notification_id"],
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                ),
                r["recorded_at"],
                None if r["hash"] is None else bytes(r["hash"]),
            )
            for r in self._query(sql, params)
        ]

    def position_at(self, instant: int) -> int:
        """The last position recorded at or before ``instant`` (0 if none)."""
        rows = self._query(
            SQL("SELECT MAX(notification_id) AS p FROM {} WHERE recorded_at <= %s").format(
                self._chain
            ),
            [instant],
        )
        return int(rows[0]["p"] or 0)

    def version_at(self, originator_id: UUID, instant: int) -> int | None:
        """The aggregate's last version recorded at or before ``instant``."""
        rows = self._query(
            SQL(
                "SELECT MAX(e.originator_version) AS v FROM {} e JOIN {} c "
                "ON c.notification_id = e.notification_id "
                "WHERE e.originator_id = %s AND c.recorded_at <= %s"
            ).format(self._events, self._chain),
            [originator_id, instant],
        )
        value = rows[0]["v"]
        return None if value is None else int(value)


def event_log(recorder: ApplicationRecorder) -> EventLog:
    """The application's recorder as the audit side reads it.

    Refuses a recorder without the chain: ``event_store_env`` always plugs the
    chained ones in, so anything else is a wiring mistake.
    """
    if not isinstance(
        recorder, ChainedSQLiteApplicationRecorder | ChainedPostgresApplicationRecorder
    ):
        raise TypeError(f"{type(recorder).__name__} keeps no integrity chain")
    return recorder
