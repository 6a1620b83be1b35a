"""What the ``theplaylist`` commands share: their consoles, one-line failures, opening the store.

Trouble an operator can act on (an unusable data directory, an unreachable
database, an event the log cannot decode) ends a command with one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import psycopg
import typer
from eventsourcing.persistence import MapperDeserialisationError, PersistenceError
from eventsourcing.utils import TopicError
from rich.console import Console
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings

# Without soft_wrap rich breaks lines at 80 columns when the output is not a
# terminal: a message, or an anchor to copy, must stay on one line.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

# The embedded event store's file, as infrastructure.eventstore names it.
EVENTS_FILE = "events.sqlite3"

# What building the store raises when a database cannot be opened or reached:
# sqlite3 and psycopg directly, or wrapped by SQLAlchemy and by eventsourcing.
_DATABASE_ERRORS = (sqlite3.Error, psycopg.Error, SQLAlchemyError, PersistenceError)

# An event whose stored state does not decode, or whose class no longer exists.
_DECODING_ERRORS = (MapperDeserialisationError, TopicError)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print MESSAGE in red on stderr, as it is (no markup), and exit with CODE."""
    errors.print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(code) from None


def open_container(settings: Settings, *, existing: bool = False) -> Container:
    """The container built from SETTINGS; exit 1 with one line if the store cannot be opened.

    ``existing`` is for the commands that read or clean up: on the embedded
    SQLite store they refuse a data directory without an event store, which
    building would create empty, so that a mistyped THEPLAYLIST_DATA_DIR is
    not reported as, say, an intact chain of 0 events.
    """
    try:
        if existing and not settings.uses_postgres:
            _require_event_store(settings.data_dir)
        return build(settings)
    except OSError as error:
        fail(f"cannot open the data directory {settings.data_dir}: {_os_reason(error)}")
    except _DATABASE_ERRORS as error:
        if settings.uses_postgres:
            fail(f"cannot connect to the database: {first_line(error)}")
        fail(f"cannot open the data directory {settings.data_dir}: {first_line(error)}")


def _require_event_store(data_dir: Path) -> None:
    # is_file() is also False under a missing data dir or a file; an error
    # that says more (permission denied) is raised and reported as such.
    if not (data_dir / EVENTS_FILE).is_file():
        fail(
            f"no event store in {data_dir} (no {EVENTS_FILE} there; nothing was created): "
            "check THEPLAYLIST_DATA_DIR"
        )


@contextmanager
def decodable_log() -> Iterator[None]:
    """Within the block, an event the log cannot decode ends the command with exit 1."""
    try:
        yield
    except _DECODING_ERRORS as error:
        fail(
            f"the event log holds an event that cannot be decoded ({first_line(error)}); "
            "check the log with `theplaylist audit verify`"
        )


def first_line(error: BaseException) -> str:
    """The first line of ERROR's message (of the driver's own error under SQLAlchemy's)."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _os_reason(error: OSError) -> str:
    if error.strerror is None or error.filename is None:
        return first_line(error)
    name = os.fsdecode(error.filename)
    # mkdir(exist_ok=True) raises this only for something that is not a directory.
    if isinstance(error, FileExistsError) and not os.path.isdir(name):
        return f"{name} is not a directory"
    return f"{error.strerror}: {name}"
