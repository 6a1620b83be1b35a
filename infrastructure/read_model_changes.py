"""Where a query process learns that the read models changed (for kept answers).

* PostgreSQL: a trigger on ``projection_positions`` NOTIFYs a channel of the
  schema when a transaction that moved a position commits
  (:func:`projections.schema.install_change_notice`). :class:`NotifiedChanges`
  LISTENs on it from a thread and counts: the stamp is that counter, read
  without any I/O.
* SQLite: no NOTIFY. :class:`PolledChanges` reads the positions table on each
  lookup: a few rows of a local file.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Hashable

import psycopg
from psycopg import sql
from sqlalchemy import Engine, select

from projections.schema import projection_positions, read_models_channel

log = logging.getLogger(__name__)


class NotifiedChanges:
    """A counter of the read models' changes, moved by PostgreSQL NOTIFY.

    Starts listening at the first :meth:`current`, so that only processes that
    keep answers hold the extra connection. The stamp is None until LISTEN is
    in place, and again whenever the connection is lost: changes made
    meanwhile would go unseen. Each (re)connection moves the counter, since
    whatever was kept before it may be stale.
    """

    blocking = False

    def __init__(self, conninfo: str, schema: str) -> None:
        self._conninfo = conninfo
        self._channel = read_models_channel(schema)
        self._counter = itertools.count(1)
        self._stamp: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def current(self) -> Hashable | None:
        """The number of changes seen so far; None while not listening."""
        if self._thread is None:
            self._start()
        return self._stamp

    def close(self) -> None:
        """Stop listening (returns within about a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stamp = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="pg-listen-read-models", daemon=True
                )
                self._thread.start()

    def _moved(self) -> None:
        self._stamp = next(self._counter)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._moved()
                    while not self._stop.is_set():
                        # A short timeout keeps close() quick; idle waits cost nothing.
                        for _ in conn.notifies(timeout=0.1, stop_after=1):
                            self._moved()
            except psycopg.Error:
                log.warning("read-model LISTEN connection lost; reconnecting", exc_info=True)
            finally:
                self._stamp = None
            self._stop.wait(1.0)


class PolledChanges:
    """The positions table itself as the stamp: every change moves a row of it."""

    blocking = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def current(self) -> Hashable | None:
        """Every projection's name, position, version and time of its last batch."""
        table = projection_positions
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(table.c.name, table.c.position, table.c.version, table.c.updated_at)
            ).all()
        return tuple(sorted(tuple(row) for row in rows))

    def close(self) -> None:
        """Nothing to release: the engine belongs to the container."""
