"""A few prepared statements sent through libpq's pipeline mode, below psycopg's cursors.

The event store's two hottest exchanges (a batch's save and its aggregates'
read) are a fixed handful of statements with binary arrays for parameters.
Through psycopg's cursors each statement of a pipeline is adapted, queued,
sent and polled for on its own: about 0.4 ms of Python per save of a
14-command batch, a quarter of the group committer's CPU (measured, batches
of 14 reaction and play commands). Here the statements are prepared once per
connection, their parameters are encoded by the caller (the binary array
format is a few ``struct`` calls), every statement up to a sync goes out in
one write, and the results come back as libpq gives them, still binary.

The connection is a psycopg one from the library's pool, borrowed for the
exchange and handed back idle: a failed exchange is rolled back on the wire
first, and a connection left in an unknown state is closed, which the pool
drops. psycopg and the pool find it as they left it.
"""

from __future__ import annotations

import contextlib
import struct
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import errors, pq
from psycopg.abc import PQGen
from psycopg.waiting import Ready, Wait, wait_async

T = TypeVar("T")

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_BINARY = 1

# Element type OIDs of the arrays sent (pg_type).
UUID_OID = 2950
TEXT_OID = 25
INT8_OID = 20
BYTEA_OID = 17

# How often an awaited exchange looks at its socket unprompted (wait_async's
# default of 0 would have it poll the socket in a loop, a core's worth of CPU).
_WAKE_INTERVAL = 1.0

_INT4 = struct.Struct(">i")
_INT8 = struct.Struct(">q")
_LENGTH_16 = _INT4.pack(16)
_LENGTH_8 = _INT4.pack(8)


def _array(oid: int, count: int, elements: bytes) -> bytes:
    """A one-dimensional array without NULLs in PostgreSQL's binary format (array_send)."""
    if count == 0:
        return struct.pack(">iiI", 0, 0, oid)
    return struct.pack(">iiIii", 1, 0, oid, count, 1) + elements


def uuid_array(values: Sequence[UUID]) -> bytes:
    """``uuid[]``, binary."""
    return _array(UUID_OID, len(values), b"".join(_LENGTH_16 + v.bytes for v in values))


def int8_array(values: Sequence[int]) -> bytes:
    """``bigint[]``, binary."""
    return _array(INT8_OID, len(values), b"".join(_LENGTH_8 + _INT8.pack(v) for v in values))


def bytes_array(oid: int, values: Sequence[bytes]) -> bytes:
    """An array of variable-length elements given as bytes (``bytea[]``, ``text[]``), binary."""
    return _array(oid, len(values), b"".join(_INT4.pack(len(v)) + v for v in values))


def text_array(values: Iterable[str]) -> bytes:
    """``text[]``, binary (UTF-8: the database's encoding, checked at start-up by libpq)."""
    return bytes_array(TEXT_OID, [v.encode() for v in values])


def int8(value: bytes) -> int:
    """A binary ``bigint`` value."""
    return int(_INT8.unpack(value)[0])


@dataclass(frozen=True)
class Statement:
    """A statement prepared under ``name`` on every connection that runs it."""

    name: bytes
    sql: bytes


# The statements each connection has prepared; it forgets them when it is dropped.
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary()
)


def _until_sync(pgconn: pq.abc.PGconn) -> PQGen[list[pq.abc.PGresult]]:
    """Flush what is queued, then collect the results up to the pipeline's sync point."""
    while pgconn.flush():
        ready = yield Wait.RW
        if ready & Ready.R:
            pgconn.consume_input()
    results: list[pq.abc.PGresult] = []
    while True:
        if pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            continue
        if result.status == pq.ExecStatus.PIPELINE_SYNC:
            return results
        results.append(result)


class StatementsLost(errors.OperationalError):
    """The connection's prepared statements were deallocated behind the pipeline's back."""


Exchange = Callable[["Pipeline"], PQGen[T]]
"""What runs in a pipeline: a psycopg generator (``yield from pipeline.sync()``), so
that one exchange serves a blocking caller and one on an event loop alike."""


class Pipeline:
    """libpq's pipeline mode on a psycopg connection, for one exchange.

    ``send`` queues a prepared statement (binary parameters, binary results);
    ``yield from sync()`` sends everything queued and returns one result per
    statement, raising the first error the server reported (psycopg's
    exception for it). Statements after an error in the same sync are skipped
    by the server. Run exchanges with :func:`pipelined` or
    :func:`pipelined_async`.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._pgconn = conn.pgconn
        self._known = _prepared.setdefault(conn, set())
        # What each result up to the next sync will answer: a preparation's
        # statement name, or None for a statement run.
        self._pending: list[bytes | None] = []

    def send(self, statement: Statement, params: Sequence[bytes | None]) -> None:
        """Queue ``statement`` with binary ``params``; prepared first if new to the connection."""
        if statement.name not in self._known:
            self._pgconn.send_prepare(statement.name, statement.sql)
            self._pending.append(statement.name)
            self._known.add(statement.name)
        self._pgconn.send_query_prepared(
            statement.name, params, [_BINARY] * len(params), result_format=_BINARY
        )
        self._pending.append(None)

    def send_simple(self, sql: bytes) -> None:
        """Queue a statement without parameters (BEGIN, COMMIT, LOCK...), unprepared."""
        self._pgconn.send_query_params(sql, None, result_format=_BINARY)
        self._pending.append(None)

    def sync(self) -> PQGen[list[pq.abc.PGresult]]:
        """Send what is queued; the results of the statements run, in order.

        Raises the first error the server reported, as psycopg's exception for it.
        """
        self._pgconn.pipeline_sync()
        pending, self._pending = self._pending, []
        results = yield from _until_sync(self._pgconn)
        if len(results) != len(pending):
            raise errors.InternalError(f"{len(pending)} statements sent, {len(results)} results")
        failure = None
        for prepared, result in zip(pending, results, strict=True):
            if result.status in _OK:
                continue
            if prepared is not None:
                self._known.discard(prepared)  # to be prepared again next time
            if failure is None and result.status != pq.ExecStatus.PIPELINE_ABORTED:
                failure = result
        if failure is not None:
            error = errors.error_from_result(failure, encoding=self._conn.info.encoding)
            if isinstance(error, errors.InvalidSqlStatementName):
                # Someone ran DEALLOCATE ALL on the connection (psycopg does on a
                # rollback of its own when it had prepared statements there).
                self._known.clear()
                raise StatementsLost(str(error)) from error
            raise error
        if any(r.status not in _OK for r in results):
            raise errors.InternalError("a pipelined statement was skipped without an error")
        if any(prepared is not None for prepared in pending):
            return [r for p, r in zip(pending, results, strict=True) if p is None]
        return results

    def rollback(self) -> PQGen[None]:
        """End the transaction the pipeline is in, if any, without psycopg's help.

        psycopg's own ``rollback()`` would also deallocate every prepared
        statement of the connection, the pipeline's included.
        """
        if self._pending:
            # Sent but not synced: their results come first (their errors are moot now).
            with contextlib.suppress(psycopg.Error):
                yield from self.sync()
        if self._pgconn.transaction_status != pq.TransactionStatus.IDLE:
            self.send_simple(b"ROLLBACK")
            yield from self.sync()


def _pipelined(conn: psycopg.Connection[Any], exchange: Exchange[T]) -> PQGen[T]:
    """``exchange`` in pipeline mode; whatever it leaves open is rolled back on failure.

    When the connection's prepared statements turn out to be gone, they are
    prepared again and ``exchange`` runs once more: nothing of the first run
    was committed.
    """
    pgconn = conn.pgconn
    for attempt in (1, 2):
        pipeline = Pipeline(conn)
        pgconn.enter_pipeline_mode()
        try:
            result = yield from exchange(pipeline)
        except GeneratorExit:
            # Abandoned half-way (its awaiting task was cancelled): nothing more may
            # be sent from here, and the connection's state is unknown.
            conn.close()
            raise
        except BaseException as error:
            try:
                yield from pipeline.rollback()
            except psycopg.Error:
                conn.close()  # in an unknown state: the pool drops a closed connection
                raise error from None
            pgconn.exit_pipeline_mode()
            if isinstance(error, StatementsLost) and attempt == 1:
                continue
            raise
        pgconn.exit_pipeline_mode()
        return result
    raise AssertionError("unreachable")


def pipelined(conn: psycopg.Connection[Any], exchange: Exchange[T]) -> T:
    """Run ``exchange`` on ``conn``, blocking."""
    return conn.wait(_pipelined(conn, exchange))


async def pipelined_async(conn: psycopg.Connection[Any], exchange: Exchange[T]) -> T:
    """Run ``exchange`` on ``conn``, awaiting the socket on the running event loop."""
    steps = _pipelined(conn, exchange)
    try:
        return await wait_async(steps, conn.pgconn.socket, interval=_WAKE_INTERVAL)
    finally:
        # Cancelled mid-exchange: end it now, before the connection goes back to the pool.
        steps.close()
