"""Operator commands on blob storage: ``storage gc``.

Registered on the main ``theplaylist`` command in :mod:`interfaces.cli`.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Annotated

import typer

from interfaces.cli_support import console, fail, open_container

storage_cli = typer.Typer(help="Operate the blob storage.", no_args_is_help=True)

# Ten years: beyond it no blob is ever too recent, and timedelta and dates overflow
# not far past it.
MAX_GRACE_SECONDS = 10 * 365 * 24 * 3600


@storage_cli.command("gc")
def storage_gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be removed.")
    ] = False,
    grace_seconds: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_GRACE_SECONDS,
            help="Leave blobs younger than this alone "
            "(default: THEPLAYLIST_STORAGE_GC_GRACE_SECONDS).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove blobs that no live track references (orphans of interrupted uploads,
    files of deleted tracks), and unfinished writes."""
    from application.errors import StorageUnavailable
    from interfaces.cli import load_settings
    from interfaces.http.uploads import spool_directory, sweep_spool

    settings = load_settings()
    grace = settings.storage_gc_grace_seconds if grace_seconds is None else grace_seconds
    container = open_container(settings, existing=True)
    try:
        cutoff = container.clock.now() - timedelta(seconds=grace)
        report = container.app.collect_garbage(cutoff, dry_run=dry_run)
        spooled = 0 if dry_run else sweep_spool(spool_directory(settings.data_dir), cutoff)
    except StorageUnavailable as error:
        fail(f"blob storage is unavailable: {error}")
    finally:
        container.close()
    result = {**vars(report), "spooled_uploads_removed": spooled, "dry_run": dry_run}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"examined {report.examined} blobs: {report.referenced} in use, "
        f"{report.recent} too recent to judge; {verb} {report.removed} "
        f"({report.bytes_removed} bytes); {report.incomplete_removed} unfinished writes "
        f"and {spooled} stale spooled uploads removed"
    )
