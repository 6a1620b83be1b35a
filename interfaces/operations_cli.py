"""Operator commands: ``audit verify``, ``audit export`` and ``projections rebuild``.

Registered on the main ``theplaylist`` command in :mod:`interfaces.cli`.
Long reads show a progress bar on stderr, so stdout stays clean for
``--json`` output.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

audit_cli = typer.Typer(help="Read and check the event log.", no_args_is_help=True)

console = Console()
errors = Console(stderr=True)

_ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


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
    from infrastructure.bootstrap import build
    from interfaces.cli import load_settings

    parsed = None
    if anchor is not None:
        match = _ANCHOR.match(anchor.strip().lower())
        if match is None:
            errors.print("[red]--anchor must be POSITION:HASH (64 hex digits)[/red]")
            raise typer.Exit(2)
        parsed = (int(match[1]), bytes.fromhex(match[2]))
    container = build(load_settings())
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


@audit_cli.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="The JSON Lines file to write.")],
) -> None:
    """Write the whole log as JSON Lines, one event per line, in batches (constant memory)."""
    from infrastructure.bootstrap import build
    from interfaces.cli import load_settings

    container = build(load_settings())
    count = 0
    try:
        with out.open("w", encoding="utf-8") as file, progress_bar("exporting") as update:
            for event in container.audit.stream(progress=update):
                file.write(json.dumps(event.as_json(), separators=(",", ":")) + "\n")
                count += 1
    except OSError as error:
        errors.print(f"[red]cannot write {out}: {error.strerror}[/red]")
        raise typer.Exit(1) from None
    finally:
        container.close()
    console.print(f"{count} events written to {out}")


def projections_rebuild(
    name: Annotated[str, typer.Argument(help="The projection, as `projections status` names it.")],
    wait: Annotated[
        bool, typer.Option(help="Wait for a rebuild of NAME already running, then run.")
    ] = False,
) -> None:
    """Rebuild one read model from the whole log; the live one serves until the switch.

    A rebuild that is interrupted (even by SIGKILL) leaves the live model as it
    was; running the command again resumes where it stopped.
    """
    from infrastructure.bootstrap import build
    from interfaces.cli import load_settings
    from projections.rebuild import NotRebuildable, RebuildBusy, SwitchBlocked

    container = build(load_settings())
    try:
        try:
            with progress_bar(f"rebuilding {name}") as update:
                report = container.rebuild(name, progress=update).run(wait=wait)
        except LookupError:
            known = ", ".join(sorted(p.name for p in container.projectors))
            errors.print(f"[red]no projection is named {name!r}[/red] (known: {known})")
            raise typer.Exit(2) from None
        except (RebuildBusy, NotRebuildable, SwitchBlocked) as error:
            errors.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from None
    finally:
        container.close()
    resumed = f", resumed at {report.resumed_from}" if report.resumed_from else ""
    console.print(
        f"[green]{report.name}[/green] (version {report.version}) rebuilt up to position "
        f"{report.position} in {report.seconds:.1f}s{resumed}"
    )
