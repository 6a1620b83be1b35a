"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, write the reports.

A throwaway PostgreSQL cluster (the tests' own) is started for the run and
removed afterwards. Each scenario is a module of this package with a
``run(ctx) -> list[Figure]``; one that fails is reported and the others go on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS, Context, Figure, load_figures, write_reports
from tests.support.postgres import start_cluster, stop_cluster

SCENARIOS = ["commands", "replay", "freshness", "queries", "upload", "streaming"]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and write bench/results/latest.*."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (< 3 min)")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="run only these")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, 5 full)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the command and query services (default 2, one per core)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios' figures of latest.json (same mode) and replace these",
    )
    parser.add_argument(
        "--render", action="store_true", help="only redraw the reports from latest.json"
    )
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads((RESULTS / "latest.json").read_text())
        print(
            write_reports(
                load_figures(RESULTS / "latest.json"),
                saved["mode"] == "quick",
                {k: v for k, v in saved.items() if k not in {"figures", "mode", "measured_at"}},
                measured_at=saved["measured_at"],
            )
        )
        return 0
    chosen = args.only or SCENARIOS
    scratch = Path(tempfile.mkdtemp(prefix="theplaylist-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "servers.log"
    log.write_text("")
    cluster = start_cluster()
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        ctx = Context(
            quick=args.quick,
            cluster=cluster,
            scratch=scratch,
            reps=args.reps or (3 if args.quick else 5),
            log=log,
            workers=args.workers,
        )
        for name in chosen:
            began = time.monotonic()
            print(f"bench: {name}...", flush=True)
            try:
                module = importlib.import_module(f"bench.{name}")
                found: list[Figure] = module.run(ctx)
                figures += found
                for figure in found:
                    print(
                        f"  {figure.subject}: {figure.value:,.1f} {figure.unit} vs "
                        f"{figure.baseline} {figure.baseline_value:,.1f} -> {figure.ratio:.2f}x",
                        flush=True,
                    )
            except Exception:
                failures[name] = traceback.format_exc()
                print(f"  {name} failed:\n{failures[name]}", file=sys.stderr, flush=True)
            timings[name] = round(time.monotonic() - began, 1)
    finally:
        stop_cluster(cluster)
        shutil.rmtree(scratch, ignore_errors=True)
    extra: dict[str, object] = {
        "seconds": timings,
        "total_seconds": round(time.monotonic() - started, 1),
        "failures": failures,
    }
    measured_at = None
    if args.merge:
        figures, measured_at, extra = _merged(figures, chosen, args.quick, timings, extra)
    table = write_reports(figures, args.quick, extra, measured_at=measured_at)
    print(table)
    return 1 if failures else 0


def _merged(
    figures: list[Figure],
    chosen: list[str],
    quick: bool,
    timings: dict[str, float],
    extra: dict[str, object],
) -> tuple[list[Figure], str, dict[str, object]]:
    """The previous run's figures with the scenarios run now replaced, and when each was run."""
    saved = json.loads((RESULTS / "latest.json").read_text())
    if saved["mode"] != ("quick" if quick else "full"):
        raise SystemExit("--merge needs a latest.json of the same mode")
    kept = [f for f in load_figures(RESULTS / "latest.json") if f.scenario not in chosen]
    merged = sorted(kept + figures, key=lambda f: SCENARIOS.index(f.scenario))
    now = datetime.now(UTC).isoformat()
    remeasured = {**saved.get("remeasured", {}), **dict.fromkeys(chosen, now)}
    seconds = {**saved.get("seconds", {}), **timings}
    return merged, saved["measured_at"], {**extra, "seconds": seconds, "remeasured": remeasured}


if __name__ == "__main__":
    sys.exit(main())
