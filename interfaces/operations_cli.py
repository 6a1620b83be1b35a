"""Operator commands: ``audit verify``, ``audit export`` and ``projections rebuild``.

Registered on the main ``theplaylist`` command in :mod:`interfaces.cli`.
Long reads show a progress bar on stderr, so stdout stays clean for
``--json`` output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from infrastructure.bootstrap import Container
from interfaces.cli_support import console, decodable_log, errors, fail, open_container

audit_cli = typer.Typer(help="Read and check the event log.", no_args_is_help=True)

# ASCII digits only: \d would take other scripts' digits, which int() reads too.
_ANCHOR = re.compile(r"([0-9]+):([0-9a-f]{64})")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(position, head)``."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(position: int, head: int) -> None:
            progress.update(task, completed=position, total=head)

        yield update


@audit_cli.command("verify")
def audit_verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            help="POSITION:HASH of a head reported earlier (kept outside the database): "
            "it must still be in the log, unchanged.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the integrity chain of the whole log; exit 1 if it is broken."""
    from interfaces.cli import load_settings

    parsed = None if anchor is None else _parse_anchor(anchor)
    container = open_container(load_settings(), existing=True)
    try:
        with progress_bar("verifying") as update:
            report = container.audit.verify(anchor=parsed, progress=update)
    finally:
        container.close()
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "first_broken_position": report.first_broken_position,
                    "reason": report.reason,
                    "head_position": report.head_position,
                    "head_hash": report.head_hash,
                }
            )
            + "\n"
        )
    elif report.ok:
        console.print(f"[green]chain intact[/green]: {report.checked} events checked")
        if report.head_hash is not None:
            console.print(f"head (keep it as an anchor): {report.head_position}:{report.head_hash}")
    else:
        console.print(
            f"[red]chain broken at position {report.first_broken_position}[/red]: "
            f"{report.reason} ({report.checked} events checked before it)"
        )
    if not report.ok:
        raise typer.Exit(1)


def _parse_anchor(anchor: str) -> tuple[int, bytes]:
    match = _ANCHOR.fullmatch(anchor.strip().lower())
    # Positions start at 1: an anchor at 0 would name no event and check nothing.
    if match is None or int(match[1]) < 1:
        fail("--anchor must be POSITION:HASH (a position from 1, 64 hex digits)", 2)
    return int(match[1]), bytes.fromhex(match[2])


@audit_cli.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="The JSON Lines file to write.")],
) -> None:
    """Write the whole log as JSON Lines, one event per line, in batches (constant memory).

    The file is written beside OUT under a temporary name and renamed over OUT
    once complete: a failed export leaves the previous one as it was.
    """
    from interfaces.cli import load_settings

    if str(out) == "-":
        fail("--out must name a file (standard output is not supported)", 2)
    if out.is_dir():
        fail(f"cannot write {out}: it is a directory")
    container = open_container(load_settings(), existing=True)
    try:
        count = _export(container, out)
    except OSError as error:
        fail(f"cannot write {out}: {error.strerror or error}")
    finally:
        container.close()
    console.print(f"{count} events written to {out}")


def _export(container: Container, out: Path) -> int:
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    # Exclusive creation: a leftover of the same name is never reused.
    with open(temporary, "x", encoding="utf-8") as file:
        try:
            count = _write_log(container, file)
            file.flush()
            # On disk before the rename: a crash must not leave OUT empty.
            os.fsync(file.fileno())
            if out.exists():
                shutil.copymode(out, temporary)
            os.replace(temporary, out)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
    return count


def _write_log(container: Container, file: TextIO) -> int:
    count = 0
    with progress_bar("exporting") as update:
        for event in container.audit.stream(progress=update):
            file.write(json.dumps(event.as_json(), separators=(",", ":")) + "\n")
            count += 1
    return count


def projections_rebuild(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The projection, as `projections status` names it."),
    ],
    wait: Annotated[
        bool, typer.Option(help="Wait for a rebuild of NAME already running, then run.")
    ] = False,
) -> None:
    """Rebuild one read model from the whole log; the live one serves until the switch.

    A rebuild that is interrupted (even by SIGKILL) leaves the live model as it
    was; running the command again resumes where it stopped.
    """
    from interfaces.cli import load_settings
    from projections.rebuild import NotRebuildable, RebuildBusy, SwitchBlocked

    # A rebuild reads the log: from a store just created empty it would only mislead.
    container = open_container(load_settings(), existing=True)
    try:
        _require_rebuildable(container, name)
        with decodable_log(), progress_bar(f"rebuilding {name}") as update:
            report = container.rebuild(name, progress=update).run(wait=wait)
    except (RebuildBusy, NotRebuildable, SwitchBlocked) as error:
        fail(str(error))
    finally:
        container.close()
    resumed = f", resumed at {report.resumed_from}" if report.resumed_from else ""
    console.print(
        f"[green]{report.name}[/green] (version {report.version}) rebuilt up to position "
        f"{report.position} in {report.seconds:.1f}s{resumed}"
    )


def _require_rebuildable(container: Container, name: str) -> None:
    # Checked before the progress bar is drawn, so that a typo shows only its error.
    tables = {p.name: tuple(p.tables) for p in container.projectors}
    if name not in tables:
        known = ", ".join(sorted(n for n, kept in tables.items() if kept))
        fail(f"no projection is named {name!r} (known: {known})", 2)
    if not tables[name]:
        fail(f"{name} keeps no read model to rebuild")
