"""Scenario 3: how soon an acknowledged command is visible through the query API.

The embedded default (commands, queries and projectors in one process) on
PostgreSQL takes reaction and play commands, each followed by a read, at
half the maximum rate that same server sustains for that mix (measured
first, closed loop). After each command, the same connection
asks for the track with ``X-Min-Position`` set to the command's position: the
answer comes once the read models hold the command's effect, so the time from
the command's answer to the query's is the freshness lag. The baseline is the
same query at the same load without the header (no waiting).
"""

from __future__ import annotations

from typing import Any

from bench.commands import CLIENTS, HOT_TRACKS
from bench.common import Context, Figure, median
from bench.loadgen import Request, drive
from bench.population import access_tokens, populated
from bench.server import running
from tests.support.postgres import free_port

PROBING_CLIENTS = 32


def steps(token: str, tracks: list[Any], index: int, wait: bool) -> list[list[Request]]:
    """Commands, each followed by a read of the same track (waiting for it, or not)."""
    auth = {"Authorization": f"Bearer {token}"}
    probe_headers = {**auth, "X-Min-Position": "{position}"} if wait else auth
    cycle: list[list[Request]] = []
    for step in range(12):
        track = (
            tracks[step % HOT_TRACKS]
            if step % 4 == 0
            else tracks[(index * 12 + step) % 997 + HOT_TRACKS]
        )
        read: Request = ("GET", f"/api/v1/tracks/{track}", probe_headers, None)
        cycle.append([("POST", f"/api/v1/tracks/{track}/plays", auth, None), read])
        cycle.append([("PUT", f"/api/v1/tracks/{track}/reactions/like", auth, None), read])
        cycle.append([("DELETE", f"/api/v1/tracks/{track}/reactions/like", auth, None), read])
    return cycle


def closed_loop_rate(base: str, clients: list[Any], ctx: Context) -> float:
    """Commands (each with its read) per second the server sustains, as fast as it can."""
    host, port = base.removeprefix("http://").split(":")
    summary = drive(
        {"host": host, "port": int(port), "warmup": 1.0, "duration": 3.0, "clients": clients},
        ctx.scratch,
    )
    return float(summary["throughput"])


def run(ctx: Context) -> list[Figure]:
    """Measure the lag p50/p99 at half the maximum command rate."""
    env = ctx.env("postgres")
    _, tracks = populated(env, CLIENTS, 1000)
    duration, warmup = (2.0, 0.5) if ctx.quick else (15.0, 1.0)
    with running("combined", free_port(), env, ctx.log) as base:
        tokens = access_tokens(base, PROBING_CLIENTS)
        waiting = [steps(t, tracks, i, wait=True) for i, t in enumerate(tokens)]
        plain = [steps(t, tracks, i, wait=False) for i, t in enumerate(tokens)]
        maximum = closed_loop_rate(base, plain, ctx)
        rate = maximum / 2
        host, port = base.removeprefix("http://").split(":")
        runs: dict[str, list[dict[str, Any]]] = {"wait": [], "plain": []}
        for _ in range(ctx.reps):
            for name, clients in (("plain", plain), ("wait", waiting)):
                summary = drive(
                    {
                        "host": host,
                        "port": int(port),
                        "warmup": warmup,
                        "duration": duration,
                        "clients": clients,
                        "rate": rate,
                    },
                    ctx.scratch,
                )
                if summary["errors"] or any(
                    not s.split()[-1].startswith("2") for s in summary["statuses"]
                ):
                    raise RuntimeError(f"freshness {name}: {summary['statuses']}")
                runs[name].append(summary)
    p50 = {n: median([s["probe_p50_ms"] for s in r]) for n, r in runs.items()}
    p99 = {n: median([s["probe_p99_ms"] for s in r]) for n, r in runs.items()}
    achieved = median([s["throughput"] for s in runs["wait"]])
    note = (
        f"{achieved:.0f} commands/s (half of {maximum:.0f}), {PROBING_CLIENTS} clients each reading"
        f" its track after every command; lag p50 {p50['wait']:.1f} ms, p99 {p99['wait']:.1f} ms;"
        f" the same read without waiting p50 {p50['plain']:.1f} ms, p99 {p99['plain']:.1f} ms"
    )
    detail = {"rate": rate, "achieved": achieved, "p50_ms": p50, "p99_ms": p99, "note": note}
    return [
        Figure(
            "freshness",
            "command to visible in queries, p99",
            "ms",
            p99["wait"],
            "the same query, no waiting (p99)",
            p99["plain"],
            higher_is_better=False,
            limit=250.0,
            detail=detail,
        ),
        Figure(
            "freshness",
            "command to visible in queries, p50",
            "ms",
            p50["wait"],
            "the same query, no waiting (p50)",
            p50["plain"],
            higher_is_better=False,
        ),
    ]
