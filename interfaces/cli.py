"""The ``theplaylist`` command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.table import Table

from application.unit_of_work import Committed
from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from interfaces.cli_support import console, decodable_log, errors, fail, open_container
from interfaces.http.serving import run
from interfaces.logging import configure_logging
from interfaces.operations_cli import audit_cli, projections_rebuild
from interfaces.storage_cli import storage_cli

cli = typer.Typer(
    help="ThePlaylist: an event-sourced social network for music playlists.",
    no_args_is_help=True,
    add_completion=False,
)
projections_cli = typer.Typer(
    help="Operate the projectors and their read models.", no_args_is_help=True
)
users_cli = typer.Typer(help="Administer users.", no_args_is_help=True)
cli.add_typer(projections_cli, name="projections")
cli.add_typer(users_cli, name="users")
cli.add_typer(audit_cli, name="audit")
projections_cli.command("rebuild")(projections_rebuild)
cli.add_typer(storage_cli, name="storage")

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]


def load_settings() -> Settings:
    """The settings, or exit with a message naming each bad one."""
    try:
        settings = Settings()
    except ValidationError as error:
        for item in error.errors():
            name = "_".join(str(p) for p in item["loc"]).upper()
            where = f"THEPLAYLIST_{name}" if name else "settings"
            errors.print(f"[red]invalid setting {where}[/red]: {item['msg']}")
        raise typer.Exit(2) from None
    except UnicodeDecodeError as error:
        # Only a settings file is decoded (the environment arrives as str).
        env_file = Settings.model_config.get("env_file")
        bad = error.object[error.start : error.start + 1].hex()
        fail(f"cannot read the settings file {env_file}: not UTF-8 (byte 0x{bad})", 2)
    configure_logging(settings.log_level, settings.log_format)
    return settings


Workers = Annotated[
    int,
    typer.Option(
        min=1,
        max=64,
        help="Worker processes sharing the port (PostgreSQL only for the command service).",
    ),
]


@cli.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Commands, queries and projectors in one process on one port (the embedded default)."""
    load_settings()
    run("combined", host, port)


@cli.command("serve-commands")
def serve_commands(host: Host = "127.0.0.1", port: Port = 8001, workers: Workers = 1) -> None:
    """The command service alone (behind a proxy routing as in API.md)."""
    settings = load_settings()
    if workers > 1 and not settings.uses_postgres:
        # SQLite allows one writer at a time: processes would only queue on its lock.
        errors.print("[red]--workers above 1 needs THEPLAYLIST_DATABASE_URL (PostgreSQL)[/red]")
        raise typer.Exit(2)
    run("commands", host, port, workers)


@cli.command("serve-queries")
def serve_queries(host: Host = "127.0.0.1", port: Port = 8002, workers: Workers = 1) -> None:
    """The query service alone (run ``projections run`` beside it)."""
    load_settings()
    run("queries", host, port, workers)


@projections_cli.command("run")
def projections_run() -> None:
    """Run every projector until interrupted (SIGINT or SIGTERM)."""
    container = open_container(load_settings())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    container.start_projections()
    errors.print("projectors running; Ctrl-C to stop")
    try:
        stop.wait()
    finally:
        container.close()


def projection_status(container: Container) -> list[dict[str, Any]]:
    """Per projection: position, log head, lag in events and in seconds."""
    head = container.app.head
    now = datetime.now(UTC)
    rows = []
    for runner in container.runners():
        position = runner.position()
        lag_seconds = 0.0
        if position < head:
            notes = container.app.recorder.select_notifications(
                start=position, limit=1, inclusive_of_start=False
            )
            if notes:
                oldest: Any = container.app.mapper.to_domain_event(notes[0])
                lag_seconds = max(0.0, (now - oldest.timestamp).total_seconds())
        rows.append(
            {
                "name": runner.name,
                "position": position,
                "head": head,
                "lag_events": head - position,
                "lag_seconds": round(lag_seconds, 3),
            }
        )
    return rows


@projections_cli.command("status")
def projections_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Name, position, log head and lag of each projection."""
    container = open_container(load_settings(), existing=True)
    try:
        with decodable_log():
            rows = projection_status(container)
    finally:
        container.close()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("name", "position", "head", "lag (events)", "lag (seconds)")
    for row in rows:
        table.add_row(
            row["name"],
            str(row["position"]),
            str(row["head"]),
            str(row["lag_events"]),
            f"{row['lag_seconds']:.3f}",
        )
    console.print(table)


Username = Annotated[str, typer.Argument(metavar="USERNAME", help="The user, in any case.")]
Role = Annotated[str, typer.Argument(metavar="ROLE", help="auditor or admin")]


@users_cli.command("grant-role")
def grant_role(username: Username, role: Role) -> None:
    """Give USERNAME the role ROLE."""
    _change_role(username, role, grant=True)


@users_cli.command("revoke-role")
def revoke_role(username: Username, role: Role) -> None:
    """Take the role ROLE away from USERNAME."""
    _change_role(username, role, grant=False)


def _change_role(username: str, role: str, *, grant: bool) -> None:
    from application.errors import NotFound
    from domain.errors import InvalidValue

    for name, value in (("USERNAME", username), ("ROLE", role)):
        _require_text(name, value)
    container = open_container(load_settings())
    try:
        change = container.app.grant_role if grant else container.app.revoke_role
        with decodable_log():
            head = container.app.head
            committed = change(username, role)
            changed = _recorded_role_change(container, head, committed, role, grant=grant)
    except NotFound as error:
        fail(str(error))
    except InvalidValue as error:
        fail(f"{error.field} {error}")
    finally:
        container.close()
    if not changed:
        state = "already has" if grant else "does not have"
        console.print(f"{username} {state} the role {role}: nothing changed")
        return
    verb = "granted to" if grant else "revoked from"
    console.print(f"role {role} {verb} {username} (position {committed.position})")


def _require_text(name: str, value: str) -> None:
    # Bytes that are not UTF-8 reach argv as lone surrogates, which no store can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(f"{name} is not valid UTF-8 text", 2)


def _recorded_role_change(
    container: Container, head: int, committed: Committed[UUID], role: str, *, grant: bool
) -> bool:
    """Whether the command recorded the change, HEAD being the log's head before it.

    A command that changed nothing reports the head's position instead of its
    own event's: the head from before (which may be this very change, made
    earlier), or an event another writer appended since.
    """
    from eventsourcing.utils import get_topic

    from domain.users import User

    if committed.position <= head:
        return False
    notes = container.app.recorder.select_notifications(start=committed.position, limit=1)
    if not notes or notes[0].id != committed.position:
        return False
    note = notes[0]
    kind = User.RoleGranted if grant else User.RoleRevoked
    if str(note.originator_id) != str(committed.value) or note.topic != get_topic(kind):
        return False
    event: Any = container.app.mapper.to_domain_event(note)
    return bool(event.role == role)


def main() -> None:
    """Entry point of the ``theplaylist`` command."""
    cli()
