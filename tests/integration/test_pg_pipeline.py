"""The event store's pipelined exchanges with PostgreSQL, below psycopg's cursors.

PostgreSQL only: the pipeline is libpq's. What the save and the batch read
mean is tested on both backends elsewhere (test_audit_chain, test_group_commit);
here, what the pipeline itself must get right: the binary arrays, the
prepared statements across failures and deallocations, and connections left
as they were found.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import pq
from psycopg.abc import PQGen

from infrastructure.pg_pipeline import (
    BYTEA_OID,
    Pipeline,
    Statement,
    bytes_array,
    int8_array,
    pipelined,
    text_array,
    uuid_array,
)
from tests.support.postgres import PostgresCluster

_AS_TEXT = Statement(
    b"test_arrays_as_text",
    b"SELECT $1::uuid[]::text, $2::bigint[]::text, $3::text[]::text, $4::bytea[]::text",
)
_ONE_OVER = Statement(b"test_one_over", b"SELECT 1 / (cardinality($1::bigint[]) - 1)")
_INSERT = Statement(b"test_insert", b"INSERT INTO pipelined SELECT unnest($1::bigint[])")


@pytest.fixture
def conn(pg_cluster: PostgresCluster) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_cluster.url, autocommit=True) as connection:
        connection.execute("CREATE TEMP TABLE pipelined (n bigint PRIMARY KEY)")
        yield connection


def _prepared(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM pg_prepared_statements")}


def _one(statement: Statement, params: list[bytes | None]) -> Any:
    def exchange(pipeline: Pipeline) -> PQGen[Any]:
        pipeline.send(statement, params)
        (result,) = yield from pipeline.sync()
        return result

    return exchange


def _as_idle_as_found(conn: psycopg.Connection[Any]) -> None:
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


@given(
    ids=st.lists(st.uuids(), max_size=20),
    numbers=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    texts=st.lists(st.text(st.characters(exclude_characters="\x00")), max_size=20),
    blobs=st.lists(st.binary(max_size=300), max_size=20),
)
def test_binary_arrays_reach_postgresql_as_the_values_they_encode(
    pg_cluster: PostgresCluster,
    ids: list[UUID],
    numbers: list[int],
    texts: list[str],
    blobs: list[bytes],
) -> None:
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        sent = pipelined(
            conn,
            _one(
                _AS_TEXT,
                [
                    uuid_array(ids),
                    int8_array(numbers),
                    text_array(texts),
                    bytes_array(BYTEA_OID, blobs),
                ],
            ),
        )
        ours = [sent.get_value(0, column).decode() for column in range(4)]
        # PostgreSQL's text of the same values, sent the way psycopg adapts them.
        theirs = conn.execute(
            "SELECT %s::uuid[]::text, %s::bigint[]::text, %s::text[]::text, %s::bytea[]::text",
            (ids, numbers, texts, blobs),
        ).fetchone()
    assert theirs is not None
    assert ours == list(theirs)


def test_a_statement_is_prepared_once_per_connection(conn: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        pipelined(conn, _one(_ONE_OVER, [int8_array([1, 2])]))
    assert "test_one_over" in _prepared(conn)
    calls = conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'test_one_over'"
    ).fetchone()
    assert calls == (1,)


def test_statements_deallocated_behind_its_back_are_prepared_again(
    conn: psycopg.Connection[Any],
) -> None:
    pipelined(conn, _one(_ONE_OVER, [int8_array([1, 2])]))
    conn.execute("DEALLOCATE ALL")

    result = pipelined(conn, _one(_ONE_OVER, [int8_array([1, 2])]))

    assert result.get_value(0, 0) == (1).to_bytes(4, "big")
    assert "test_one_over" in _prepared(conn)


def test_psycopgs_own_rollback_does_not_break_the_next_exchange(
    conn: psycopg.Connection[Any],
) -> None:
    pipelined(conn, _one(_ONE_OVER, [int8_array([1, 2])]))
    # psycopg deallocates every statement of the connection when it rolls back
    # after having prepared statements of its own there.
    conn.execute("SELECT 1", prepare=True)
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT 2")

    result = pipelined(conn, _one(_ONE_OVER, [int8_array([1, 2])]))

    assert result.get_value(0, 0) == (1).to_bytes(4, "big")


def test_a_failed_exchange_is_rolled_back_without_deallocating_anything(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("SELECT 1", prepare=True)
    before = _prepared(conn)

    def insert_then_divide_by_zero(pipeline: Pipeline) -> PQGen[None]:
        pipeline.send_simple(b"BEGIN")
        pipeline.send(_INSERT, [int8_array([1, 2, 3])])
        pipeline.send(_ONE_OVER, [int8_array([1])])
        yield from pipeline.sync()

    with pytest.raises(psycopg.errors.DivisionByZero):
        pipelined(conn, insert_then_divide_by_zero)

    _as_idle_as_found(conn)
    assert conn.execute("SELECT count(*) FROM pipelined").fetchone() == (0,)
    assert before | {"test_insert", "test_one_over"} <= _prepared(conn)


def test_an_error_of_ours_between_send_and_sync_leaves_nothing_behind(
    conn: psycopg.Connection[Any],
) -> None:
    def decided_against_it() -> bool:
        raise RuntimeError("decided against it")

    def fail_half_way(pipeline: Pipeline) -> PQGen[None]:
        pipeline.send_simple(b"BEGIN")
        pipeline.send(_INSERT, [int8_array([7])])
        if not decided_against_it():  # raises: sent, never synced
            yield from pipeline.sync()

    with pytest.raises(RuntimeError, match="decided against it"):
        pipelined(conn, fail_half_way)

    _as_idle_as_found(conn)
    assert conn.execute("SELECT count(*) FROM pipelined").fetchone() == (0,)


def test_a_committed_exchange_is_visible_to_psycopg_afterwards(
    conn: psycopg.Connection[Any],
) -> None:
    def insert_and_commit(pipeline: Pipeline) -> PQGen[None]:
        pipeline.send_simple(b"BEGIN")
        pipeline.send(_INSERT, [int8_array([4, 5])])
        yield from pipeline.sync()
        pipeline.send_simple(b"COMMIT")
        yield from pipeline.sync()

    pipelined(conn, insert_and_commit)

    _as_idle_as_found(conn)
    assert conn.execute("SELECT array_agg(n ORDER BY n) FROM pipelined").fetchone() == ([4, 5],)
