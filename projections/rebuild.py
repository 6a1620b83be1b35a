"""Rebuilding one read model from the whole log while the live one keeps serving.

The projector replays the log into a *shadow* copy of its tables, batch after
batch, each batch committed with the shadow's own position (so a rebuild that
is killed resumes where it stopped). Once it has caught up, one transaction
applies the last events and puts the shadow in place of the live tables, with
the live position row moved to the shadow's position and the projector's
version. Readers see the old tables until that commit, the new ones after.

* SQLite: the shadow lives in a file of its own next to ``readmodels.sqlite3``,
  attached as schema ``rebuild``. SQLite cannot rename a table across files, so
  the switch (under ``BEGIN IMMEDIATE``) drops the live tables, recreates them
  and copies the rows over; WAL readers keep their snapshot meanwhile.
* PostgreSQL: the shadow is a schema ``<schema>_rb_<name>``. The switch locks
  the live tables, drops them and moves the shadow ones in with
  ``ALTER TABLE ... SET SCHEMA``: no copy.

A live runner of the same projection that was mid-batch during the switch
fails its position check (the position moved under it) and re-reads; one that
starts after it continues from the rebuilt position. Only tables listed in the
projector's ``tables`` are rebuilt: a projector must read and write no others.
Two rebuilds of one projection exclude each other (a file lock on SQLite, an
advisory lock on PostgreSQL; both die with their process).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from projections.projector import Projector
from projections.runner import ProjectionRunner, Wakeup
from projections.schema import projection_positions

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (position reached, head of the log) after each batch."""

SHADOW = "rebuild"

# A lock request waiting in PostgreSQL's queue holds up every reader behind it:
# wait briefly, then let readers through and try again.
_SWITCH_LOCK_TIMEOUT = "1s"
_SWITCH_ATTEMPTS = 60
_LOCK_NOT_AVAILABLE = "55P03"


class RebuildBusy(Exception):
    """Another rebuild of the same projection is running."""


class NotRebuildable(Exception):
    """The projector keeps no tables (a policy that acts on events): nothing to rebuild."""


class SwitchBlocked(Exception):
    """The live tables stayed in use through every attempt to switch; the shadow is kept."""


class _LiveTablesBusy(Exception):
    """One attempt to lock the live tables timed out."""


class RebuildInterrupted(Exception):
    """The rebuild was asked to stop; the shadow stays, a rerun resumes it."""


@dataclass(frozen=True)
class RebuildReport:
    """What a finished rebuild did."""

    name: str
    version: int
    position: int
    resumed_from: int
    seconds: float


class _Shadow(Protocol):
    """Where a rebuild writes, and how it takes the live model's place."""

    engine: Engine
    """Writes through it land in the shadow (schema translation)."""

    translate: dict[str | None, str]

    def lock(self, wait: bool) -> contextlib.AbstractContextManager[None]: ...

    def prepare(self, tables: Sequence[Table]) -> None: ...

    def drop(self) -> None: ...

    def switch(self, tables: Sequence[Table], catch_up: Callable[[Connection], int]) -> int: ...

    def close(self) -> None: ...


def _positions_row(name: str, position: int, version: int) -> dict[str, Any]:
    return {"name": name, "position": position, "version": version, "updated_at": datetime.now(UTC)}


def _upsert_position(conn: Connection, name: str, position: int, version: int) -> None:
    moved = conn.execute(
        update(projection_positions)
        .where(projection_positions.c.name == name)
        .values(position=position, version=version, updated_at=datetime.now(UTC))
    ).rowcount
    if moved == 0:
        conn.execute(insert(projection_positions).values(_positions_row(name, position, version)))


class _SqliteShadow:
    def __init__(self, live: Engine, name: str) -> None:
        database = make_url(str(live.url)).database
        assert database is not None
        self._live_path = Path(database)
        self.path = self._live_path.with_name(f"{self._live_path.stem}.rebuild-{name}.sqlite3")
        self._lock_path = self.path.with_suffix(".lock")
        self.translate: dict[str | None, str] = {None: SHADOW}
        self._base = self._open()
        self.engine: Engine = self._base.execution_options(schema_translate_map=self.translate)

    def _open(self) -> Engine:
        engine = create_engine(
            f"sqlite+pysqlite:///{self._live_path}",
            pool_size=1,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )
        shadow = str(self.path)

        def on_connect(dbapi: Any, _record: Any) -> None:
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.execute(f"ATTACH DATABASE ? AS {SHADOW}", (shadow,))
            cursor.execute(f"PRAGMA {SHADOW}.journal_mode=WAL")
            cursor.execute(f"PRAGMA {SHADOW}.synchronous=NORMAL")
            cursor.execute(f"PRAGMA {SHADOW}.secure_delete=ON")
            cursor.close()

        event.listen(engine, "connect", on_connect)
        return engine

    @contextlib.contextmanager
    def lock(self, wait: bool) -> Iterator[None]:
        with self._lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise RebuildBusy(f"another rebuild holds {self._lock_path}") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self, tables: Sequence[Table]) -> None:
        with self.engine.begin() as conn:
            for table in (projection_positions, *tables):
                table.create(conn, checkfirst=True)

    def drop(self) -> None:
        self._base.dispose()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._base = self._open()
        self.engine = self._base.execution_options(schema_translate_map=self.translate)

    def switch(self, tables: Sequence[Table], catch_up: Callable[[Connection], int]) -> int:
        with self._base.connect() as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            # Our own transaction, taken for writing at once: the live projector waits.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                conn.execution_options(schema_translate_map=self.translate)
                position = catch_up(conn)
                conn.execution_options(schema_translate_map=None)
                quote = conn.dialect.identifier_preparer.quote
                for table in tables:
                    name = quote(table.name)
                    columns = ", ".join(quote(c.name) for c in table.columns)
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS main.{name}")
                    table.create(conn)
                    conn.exec_driver_sql(
                        f"INSERT INTO main.{name} ({columns}) "  # noqa: S608 - our identifiers
                        f"SELECT {columns} FROM {SHADOW}.{name}"
                    )
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
        return position

    def close(self) -> None:
        self._base.dispose()


class _PostgresShadow:
    def __init__(self, live: Engine, name: str) -> None:
        self._live = live
        self._name = name
        with live.connect() as conn:
            self.live_schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        self.schema = f"{self.live_schema}_rb_{name}"[:63]
        self.translate: dict[str | None, str] = {None: self.schema}
        self.engine: Engine = live.execution_options(schema_translate_map=self.translate)

    @contextlib.contextmanager
    def lock(self, wait: bool) -> Iterator[None]:
        key = f"theplaylist-rebuild:{self.live_schema}:{self._name}"
        with self._live.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
            elif not conn.execute(
                text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}
            ).scalar_one():
                raise RebuildBusy(f"another rebuild of {self._name} is running")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})

    def _quote(self, conn: Connection, *names: str) -> str:
        return ".".join(conn.dialect.identifier_preparer.quote(n) for n in names)

    def prepare(self, tables: Sequence[Table]) -> None:
        with self._live.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {self._quote(conn, self.schema)}")
        with self.engine.begin() as conn:
            for table in (projection_positions, *tables):
                table.create(conn, checkfirst=True)

    def drop(self) -> None:
        with self._live.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self._quote(conn, self.schema)} CASCADE")

    def switch(self, tables: Sequence[Table], catch_up: Callable[[Connection], int]) -> int:
        with self._live.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_SWITCH_LOCK_TIMEOUT}'")
            live = [self._quote(conn, self.live_schema, t.name) for t in tables]
            existing = [
                name
                for name in live
                if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None
            ]
            if existing:
                # Waits for the live projector's batch in flight, and holds off the next.
                try:
                    conn.exec_driver_sql(
                        f"LOCK TABLE {', '.join(existing)} IN ACCESS EXCLUSIVE MODE"
                    )
                except OperationalError as error:
                    if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                        raise _LiveTablesBusy from None
                    raise
            conn.execution_options(schema_translate_map=self.translate)
            position = catch_up(conn)
            conn.execution_options(schema_translate_map=None)
            for table, name in zip(tables, live, strict=True):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
                conn.exec_driver_sql(
                    f"ALTER TABLE {self._quote(conn, self.schema, table.name)} "
                    f"SET SCHEMA {self._quote(conn, self.live_schema)}"
                )
                # Structures made by DDL listeners (a trigram index...) for the moved table.
                table.dispatch.after_create(table, conn, checkfirst=True, _ddl_runner=None)
            conn.exec_driver_sql(
                f"DROP TABLE {self._quote(conn, self.schema, projection_positions.name)}"
            )
            # RESTRICT: anything left behind means something was not moved; roll back.
            conn.exec_driver_sql(f"DROP SCHEMA {self._quote(conn, self.schema)}")
        return position

    def close(self) -> None:
        """Nothing of its own to release (it borrows the live engine)."""


class ProjectionRebuild:
    """Rebuilds the read model of one projector; see the module's docstring."""

    def __init__(
        self,
        projector: Projector,
        engine: Engine,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        *,
        batch_size: int = 2000,
        progress: Progress | None = None,
    ) -> None:
        self.projector = projector
        self.engine = engine
        self.recorder = recorder
        self.mapper = mapper
        self._batch_size = batch_size
        self._progress = progress

    @property
    def name(self) -> str:
        """The projection's name."""
        return self.projector.name

    def stored_version(self) -> int | None:
        """The version of the projector that built the live model (None before any)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(projection_positions.c.version).where(
                    projection_positions.c.name == self.name
                )
            ).scalar_one_or_none()
        return None if value is None else int(value)

    def outdated(self) -> bool:
        """True when the live model was built by another version of the projector."""
        stored = self.stored_version()
        return stored is not None and stored != self.projector.version

    def adopt_version(self) -> None:
        """Record the projector's version without replaying (for projectors without tables)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(projection_positions)
                .where(projection_positions.c.name == self.name)
                .values(version=self.projector.version)
            )

    def run(self, *, wait: bool = False, stop: threading.Event | None = None) -> RebuildReport:
        """Replay the whole log into the shadow, then switch it in atomically.

        ``wait`` waits for a concurrent rebuild of the same projection instead of
        raising :class:`RebuildBusy`. A set ``stop`` interrupts between batches.
        """
        tables = tuple(self.projector.tables)
        if not tables:
            raise NotRebuildable(f"{self.name} keeps no read model to rebuild")
        started = time.monotonic()
        shadow = self._shadow()
        try:
            with shadow.lock(wait):
                return self._run(shadow, tables, stop, started)
        finally:
            shadow.close()

    def _shadow(self) -> _Shadow:
        if self.engine.dialect.name == "postgresql":
            return _PostgresShadow(self.engine, self.name)
        return _SqliteShadow(self.engine, self.name)

    def _run(
        self,
        shadow: _Shadow,
        tables: Sequence[Table],
        stop: threading.Event | None,
        started: float,
    ) -> RebuildReport:
        shadow.prepare(tables)
        runner = ProjectionRunner(
            self.projector,
            shadow.engine,
            self.recorder,
            self.mapper,
            batch_size=self._batch_size,
            commit_hooks=False,
        )
        with shadow.engine.connect() as conn:
            row = conn.execute(
                select(projection_positions.c.version).where(
                    projection_positions.c.name == self.name
                )
            ).scalar_one_or_none()
        if row is not None and int(row) != self.projector.version:
            # Left by a rebuild of another version: of no use to this one.
            shadow.drop()
            shadow.prepare(tables)
        resumed_from = runner.position()
        if resumed_from:
            log.info("rebuild of %s resumes at position %d", self.name, resumed_from)
        while True:
            if stop is not None and stop.is_set():
                raise RebuildInterrupted(f"rebuild of {self.name} interrupted")
            head = self.recorder.max_notification_id() or 0
            read = runner.run_batch()
            if self._progress is not None:
                self._progress(runner.position(), max(head, runner.position()))
            if read < self._batch_size:
                break
        position = self._switch(shadow, tables, runner, stop)
        with contextlib.suppress(Exception):
            shadow.drop()
        if self._progress is not None:
            self._progress(position, max(position, self.recorder.max_notification_id() or 0))
        log.info("read model %s rebuilt up to position %d", self.name, position)
        return RebuildReport(
            self.name, self.projector.version, position, resumed_from, time.monotonic() - started
        )

    def _switch(
        self,
        shadow: _Shadow,
        tables: Sequence[Table],
        runner: ProjectionRunner,
        stop: threading.Event | None,
    ) -> int:
        for attempt in range(1, _SWITCH_ATTEMPTS + 1):
            try:
                return shadow.switch(tables, lambda conn: self._catch_up(conn, runner.position()))
            except _LiveTablesBusy:
                log.info("rebuild of %s: live tables busy (attempt %d)", self.name, attempt)
            if stop is not None and stop.is_set():
                raise RebuildInterrupted(f"rebuild of {self.name} interrupted")
            while runner.run_batch() >= self._batch_size:
                pass
            time.sleep(min(0.05 * attempt, 1.0))
        raise SwitchBlocked(
            f"the live tables of {self.name} stayed in use; the rebuilt copy is kept: run again"
        )

    def _catch_up(self, conn: Connection, position: int) -> int:
        """Apply what the log gained since the last batch; move the live position row."""
        while True:
            notifications = self.recorder.select_notifications(
                start=position, limit=self._batch_size, inclusive_of_start=False
            )
            if not notifications:
                break
            self._apply(conn, notifications)
            position = notifications[-1].id
        conn.execution_options(schema_translate_map=None)
        _upsert_position(conn, self.name, position, self.projector.version)
        return position

    def _apply(self, conn: Connection, notifications: Sequence[Notification]) -> None:
        events: list[Any] = [
            self.mapper.to_domain_event(n) for n in notifications if self.projector.handles(n.topic)
        ]
        if events:
            self.projector.apply(conn, events)


class UpgradingRunner(ProjectionRunner):
    """A runner whose read model was built by another projector version.

    It first rebuilds the model (the live one keeps serving meanwhile, frozen
    at its position), then follows the log like any runner.
    """

    def __init__(self, rebuild: ProjectionRebuild, *, batch_size: int) -> None:
        super().__init__(
            rebuild.projector,
            rebuild.engine,
            rebuild.recorder,
            rebuild.mapper,
            batch_size=batch_size,
        )
        self._rebuild = rebuild

    def run(
        self,
        stop: threading.Event,
        wakeup: Wakeup,
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        """Rebuild (retrying after failures) unless stopped, then follow the log."""
        while not stop.is_set() and self._rebuild.outdated():
            stored = self._rebuild.stored_version()
            log.info(
                "projection %s: version %s -> %d, rebuilding its read model",
                self.name,
                stored,
                self.projector.version,
            )
            try:
                self._rebuild.run(wait=True, stop=stop)
            except NotRebuildable:
                self._rebuild.adopt_version()
            except RebuildInterrupted:
                return
            except Exception:
                log.exception("projection %s: rebuild failed; retrying", self.name)
                stop.wait(5.0)
        super().run(stop, wakeup, idle_wait, coalesce, on_batch)


def upgrading(
    runner: ProjectionRunner, rebuild: ProjectionRebuild, batch_size: int
) -> ProjectionRunner:
    """``runner``, or a runner that first rebuilds its outdated read model."""
    if rebuild.outdated():
        return UpgradingRunner(rebuild, batch_size=batch_size)
    return runner
