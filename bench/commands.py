"""Scenario 1: commands from 64 concurrent HTTP clients, on PostgreSQL.

64 distinct signed-in users send reaction and play commands (a quarter of
them on a few hot tracks) to the command service, served by a real uvicorn
with ``--workers`` processes (two by default, one per core here). Measured
three ways against the same database, alternately:

* the commands with group commit (the default);
* the same commands with one library save per request (group commit off):
  the baseline group commit is meant to beat;
* a trivial async endpoint on the same server: what the HTTP stack alone
  costs, the ceiling.
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

from bench.common import Context, Figure, alternate, median
from bench.cpu import describe
from bench.loadgen import Request, drive
from bench.population import access_tokens, populated, settings_from
from bench.server import running
from tests.support.postgres import free_port

CLIENTS = 64
HOT_TRACKS = 4


def has_route(env: dict[str, str], method: str, path: str) -> bool:
    """True when the command service serves ``method path``."""
    from interfaces.http.commands.app import create_command_app

    app = create_command_app(settings_from(env))
    return method.lower() in app.openapi()["paths"].get(path, {})


def social_steps(token: str, tracks: list[UUID], seed: int) -> list[list[Request]]:
    """A cycle of play, like and unlike commands, one in four on a hot track."""
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {token}"}
    steps: list[list[Request]] = []
    for index in range(20):
        hot = index % 4 == 0
        track = tracks[rng.randrange(HOT_TRACKS)] if hot else rng.choice(tracks[HOT_TRACKS:])
        steps.append([("POST", f"/api/v1/tracks/{track}/plays", auth, None)])
        steps.append([("PUT", f"/api/v1/tracks/{track}/reactions/like", auth, None)])
        steps.append([("DELETE", f"/api/v1/tracks/{track}/reactions/like", auth, None)])
    return steps


def account_steps(token: str, index: int) -> list[list[Request]]:
    """Email changes back and forth (each a real change), for stores without social commands."""
    auth = {"Authorization": f"Bearer {token}"}
    return [
        [("PATCH", "/api/v1/users/me", auth, f'{{"email": "b{index}-{side}@example.com"}}')]
        for side in ("a", "b")
    ]


def run(ctx: Context) -> list[Figure]:
    """Measure commands with group commit, without, and the trivial endpoint."""
    env = ctx.env("postgres")
    social = has_route(env, "POST", "/api/v1/tracks/{track_id}/plays")
    _, tracks = populated(env, CLIENTS, 1000 if social else 0)
    single_env = {**env, "THEPLAYLIST_GROUP_COMMIT": "false"}
    duration, warmup = (1.5, 0.5) if ctx.quick else (10.0, 1.0)
    summaries: dict[str, list[dict[str, Any]]] = {"group": [], "single": [], "noop": []}
    with (
        running("commands", free_port(), env, ctx.log, ctx.workers) as grouped,
        running("commands", free_port(), single_env, ctx.log, ctx.workers) as single,
    ):
        tokens = access_tokens(grouped, CLIENTS)
        if social:
            clients = [social_steps(t, tracks, seed=i) for i, t in enumerate(tokens)]
        else:
            clients = [account_steps(t, i) for i, t in enumerate(tokens)]
        noop = [[[("POST", "/bench/noop", {"Authorization": f"Bearer {t}"}, "{}")]] for t in tokens]

        def measure(name: str, base: str, steps: list[Any]) -> float:
            host, port = base.removeprefix("http://").split(":")
            summary = drive(
                {
                    "host": host,
                    "port": int(port),
                    "warmup": warmup,
                    "duration": duration,
                    "clients": steps,
                },
                ctx.scratch,
            )
            summaries[name].append(summary)
            bad = summary["requests"] - summary["ok"]
            if bad or summary["errors"]:
                raise RuntimeError(f"{name}: failed requests {summary['statuses']}")
            return float(summary["throughput"])

        samples = alternate(
            ctx.reps,
            {
                "noop": lambda: measure("noop", grouped, noop),
                "group": lambda: measure("group", grouped, clients),
                "single": lambda: measure("single", single, clients),
            },
        )
    what = "reactions and plays" if social else "email changes (PATCH /users/me)"
    p99 = {name: median([s["p99_ms"] for s in runs]) for name, runs in summaries.items()}
    p50 = {name: median([s["p50_ms"] for s in runs]) for name, runs in summaries.items()}
    detail = {
        "workload": what,
        "clients": CLIENTS,
        "p50_ms": p50,
        "p99_ms": p99,
        "samples": samples,
        "note": (
            f"{what}, {CLIENTS} clients; p50/p99 ms: group commit {p50['group']:.1f}/"
            f"{p99['group']:.1f}, one save per request {p50['single']:.1f}/{p99['single']:.1f}, "
            f"trivial endpoint {p50['noop']:.1f}/{p99['noop']:.1f}. "
            f"Group commit, {describe([s['cpu'] for s in summaries['group']])}. "
            f"One save per request, {describe([s['cpu'] for s in summaries['single']])}. "
            f"Trivial endpoint, {describe([s['cpu'] for s in summaries['noop']])}"
        ),
        "cpu": {name: [s["cpu"] for s in runs] for name, runs in summaries.items()},
    }
    group, single_rate, noop_rate = (median(samples[n]) for n in ("group", "single", "noop"))
    ctx.shared["commands_per_second"] = group
    return [
        Figure(
            "commands",
            f"{what}, group commit",
            "req/s",
            group,
            "one save per request",
            single_rate,
            target=10.0,
            detail=detail,
        ),
        Figure(
            "commands",
            f"{what}, group commit",
            "req/s",
            group,
            "trivial async endpoint",
            noop_rate,
            target=0.4,
        ),
        Figure(
            "commands",
            "p99 latency, group commit",
            "ms",
            p99["group"],
            "one save per request",
            p99["single"],
            higher_is_better=False,
        ),
    ]
