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

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

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
from psycopg.abc import PQGen
from psycopg.pq.abc import PGresult
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier

from application.audit import GENESIS, EventLog, Link, LogEntry, LogFilter, link_hash
from infrastructure.pg_pipeline import (
    BYTEA_OID,
    Exchange,
    Pipeline,
    Statement,
    bytes_array,
    int8,
    int8_array,
    pipelined,
    pipelined_async,
    text_array,
    uuid_array,
)

CHAIN_TABLE = "event_chain"

# A save that meets a dropped connection is tried again on another, this often.
_INSERT_ATTEMPTS = 10
_INSERT_RETRY_WAIT = 0.2
_DROPPED = (InterfaceError, OperationalError)


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


def _statement_name(sql: bytes) -> bytes:
    """A prepared statement's name, from its text: two recorders never share one by mistake."""
    return b"theplaylist_" + hashlib.sha256(sql).hexdigest()[:16].encode()


def _statement(statement: Composable) -> Statement:
    """``statement``, rendered, as a statement prepared on each connection that runs it."""
    sql = _rendered(statement)
    return Statement(_statement_name(sql), sql)


def _link_columns(links: Sequence[tuple[int, int, bytes]]) -> list[bytes | None]:
    return [
        int8_array([position for position, _, _ in links]),
        int8_array([recorded_at for _, recorded_at, _ in links]),
        bytes_array(BYTEA_OID, [digest for _, _, digest in links]),
    ]


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
        # The save and the batch read run through libpq's pipeline directly
        # (infrastructure.pg_pipeline): prepared once per connection, binary
        # arrays in, binary rows out. Positions come back with their event's
        # key, so each link pairs with its event.
        id_type = Identifier(datastore.originator_id_type)
        self._ids_are_uuids = datastore.originator_id_type == "uuid"
        self._event_insert = _statement(
            SQL(
                "INSERT INTO {events} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest($1::{id_type}[], $2::bigint[], $3::text[], $4::bytea[]) "
                "RETURNING notification_id, originator_id, originator_version"
            ).format(events=self._events, id_type=id_type)
        )
        # The chain's last link and the database's clock: one clock for every writer.
        self._tail_statement = _rendered(
            SQL(
                "SELECT c.notification_id, c.recorded_at, c.hash, "
                "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now "
                "FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
                "SELECT * FROM {} ORDER BY notification_id DESC LIMIT 1) AS c ON true"
            ).format(self._chain)
        )
        self._tail_select = Statement(_statement_name(self._tail_statement), self._tail_statement)
        self._link_insert = _statement(
            SQL(
                "INSERT INTO {} SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])"
            ).format(self._chain)
        )
        self._notify = _rendered(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
        self._max_position_select = _statement(
            SQL("SELECT max(notification_id) FROM {}").format(self._events)
        )
        # Many aggregates' newer events in one round trip, each an index range scan.
        # OFFSET 0 keeps the subquery from being flattened into a join: as one, the
        # prepared (generic) plan, guessing ten ids and a third of each history,
        # hash-joined a scan of the whole table (measured under the bench's load:
        # 2.2-2.5 ms a batch on 17,000 events, growing with the log; 0.23 ms so).
        self._events_after_select = _statement(
            SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest($1::{id_type}[], $2::bigint[]) AS w(id, after) "
                "CROSS JOIN LATERAL (SELECT * FROM {events} "
                "WHERE originator_id = w.id AND originator_version > w.after OFFSET 0) AS e "
                "ORDER BY e.originator_id, e.originator_version"
            ).format(id_type=id_type, events=self._events)
        )
        self.lock_table_statements = [
            _rendered(q) if isinstance(q, Composable) else q for q in self.lock_table_statements
        ]
        self._lock_statements = [
            q if isinstance(q, bytes) else str(q).encode() for q in self.lock_table_statements
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
        curs.execute(self._tail_statement)
        row = curs.fetchone()
        assert row is not None
        now = int(row["now"])
        if row["notification_id"] is None:
            return None, now
        return Link(row["notification_id"], row["recorded_at"], bytes(row["hash"])), now

    @staticmethod
    def _tail_from(result: PGresult) -> tuple[Link | None, int]:
        position, recorded_at, digest, now = (result.get_value(0, c) for c in range(4))
        assert now is not None
        if position is None or recorded_at is None or digest is None:
            return None, int8(now)
        return Link(int8(position), int8(recorded_at), bytes(digest)), int8(now)

    def _id_array(self, ids: Sequence[Any]) -> bytes:
        if self._ids_are_uuids:
            return uuid_array([i if isinstance(i, UUID) else UUID(str(i)) for i in ids])
        return text_array(str(i) for i in ids)

    def _id_key(self, value: bytes) -> Any:
        return UUID(bytes=value) if self._ids_are_uuids else value.decode()

    @retry(
        (InterfaceError, OperationalError), max_attempts=_INSERT_ATTEMPTS, wait=_INSERT_RETRY_WAIT
    )
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events and their links in one transaction, in two round trips.

        First the lock, the NOTIFY, the events and the chain's tail, then the
        links and the COMMIT. As the library's writer: the table lock orders
        commits like positions, the NOTIFY wakes the projectors.
        """
        if not stored_events:
            return None
        with self.datastore.get_connection() as conn:
            return pipelined(conn, lambda pipeline: self._save(pipeline, stored_events))

    def _save(self, pipeline: Pipeline, stored_events: Sequence[StoredEvent]) -> PQGen[list[int]]:
        pipeline.send_simple(b"BEGIN")
        for lock in self._lock_statements:
            pipeline.send_simple(lock)
        pipeline.send_simple(self._notify)
        pipeline.send(self._event_insert, self._event_columns(stored_events))
        pipeline.send(self._tail_select, ())
        # A lost race (a version taken) is raised here, before any link is made.
        *_, inserted, tail = yield from pipeline.sync()
        positions = self._positions(inserted, stored_events)
        links = _chain_rows(*self._tail_from(tail), positions, stored_events)
        pipeline.send(self._link_insert, _link_columns(links))
        pipeline.send_simple(b"COMMIT")
        yield from pipeline.sync()
        return positions

    def _event_columns(self, stored_events: Sequence[StoredEvent]) -> list[bytes | None]:
        return [
            self._id_array([e.originator_id for e in stored_events]),
            int8_array([e.originator_version for e in stored_events]),
            text_array(e.topic for e in stored_events),
            bytes_array(BYTEA_OID, [e.state for e in stored_events]),
        ]

    def _positions(self, inserted: PGresult, stored_events: Sequence[StoredEvent]) -> list[int]:
        """The positions the insert returned, in the order of ``stored_events``."""
        returned: dict[tuple[Any, int], int] = {}
        for row in range(inserted.ntuples):
            position, originator_id, version = (inserted.get_value(row, c) for c in range(3))
            assert position is not None and originator_id is not None and version is not None
            returned[(self._id_key(originator_id), int8(version))] = int8(position)
        return [returned[(s.originator_id, s.originator_version)] for s in stored_events]

    def _write_links(self, curs: Cursor[DictRow], links: list[tuple[int, int, bytes]]) -> None:
        if links:
            positions, times, hashes = (list(column) for column in zip(*links, strict=True))
            curs.execute(
                SQL(
                    "INSERT INTO {} SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[])"
                ).format(self._chain),
                (positions, times, hashes),
            )

    def _query(self, sql: Composed, params: Sequence[Any]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql, params)
            return curs.fetchall()

    def select_events_after(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The events of each aggregate after the version given for it, in one query."""
        if not versions:
            return []
        with self.datastore.get_connection() as conn:
            return pipelined(conn, self._events_after(versions))

    def _events_after(self, versions: Mapping[UUID, int]) -> Exchange[list[StoredEvent]]:
        columns = [self._id_array(list(versions)), int8_array(list(versions.values()))]

        def select(pipeline: Pipeline) -> PQGen[list[StoredEvent]]:
            pipeline.send(self._events_after_select, columns)
            (found,) = yield from pipeline.sync()
            events = []
            for row in range(found.ntuples):
                originator_id, version, topic, state = (found.get_value(row, c) for c in range(4))
                assert originator_id is not None and version is not None
                assert topic is not None and state is not None
                events.append(
                    StoredEvent(self._id_key(originator_id), int8(version), topic.decode(), state)
                )
            return events

        return select

    # The same three operations awaited on the running event loop, for the
    # group committer that runs there (application.unit_of_work): same
    # statements, same connections, same errors.

    async def select_events_after_async(self, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """:meth:`select_events_after`, awaited."""
        if not versions:
            return []
        with self.datastore.get_connection() as conn:
            return await pipelined_async(conn, self._events_after(versions))

    async def insert_events_async(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """:meth:`insert_events`, awaited; retried on a dropped connection as it is."""
        if not stored_events:
            return []
        for attempt in range(1, _INSERT_ATTEMPTS + 1):
            try:
                with self.datastore.get_connection() as conn:
                    return await pipelined_async(
                        conn, lambda pipeline: self._save(pipeline, stored_events)
                    )
            except _DROPPED:
                if attempt == _INSERT_ATTEMPTS:
                    raise
                await asyncio.sleep(_INSERT_RETRY_WAIT)
        raise AssertionError("unreachable")

    async def max_notification_id_async(self) -> int:
        """The position of the last event in the log (0 when empty), awaited."""

        def select(pipeline: Pipeline) -> PQGen[int]:
            pipeline.send(self._max_position_select, ())
            (found,) = yield from pipeline.sync()
            value = found.get_value(0, 0)
            return 0 if value is None else int8(value)

        with self.datastore.get_connection() as conn:
            return await pipelined_async(conn, select)

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
