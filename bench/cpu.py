"""Where the machine's CPU goes during a measured window, per request served.

On two cores the server, PostgreSQL and the load generator share the same
CPUs, so a rate that stops growing is explained by who spends what per
request. The load generator takes a :func:`snapshot` of every process's CPU
time (``/proc/PID/stat``) and of the machine's (``/proc/stat``) when the
measured window opens and when it closes; :func:`per_request` turns the two
into milliseconds of CPU per request for each side.

A process that ends inside the window loses its last ticks (its parent is
credited only once it reaps it); the servers and their database connections
live across the whole window, so this is left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Clock ticks per second, the unit of the times in /proc.
_TICK = os.sysconf("SC_CLK_TCK")

SIDES = ("server", "PostgreSQL", "load generator", "other")


@dataclass(frozen=True)
class Snapshot:
    """CPU ticks used so far: by process (side, ticks), and by the whole machine."""

    processes: dict[int, tuple[str, int]]
    busy: int
    total: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """Name, parent and user + system ticks of ``pid``; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may itself hold spaces or parentheses.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def _is_server(pid: int) -> bool:
    try:
        return b"bench.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def snapshot() -> Snapshot:
    """Every process's CPU ticks, each labelled with its side, and the machine's."""
    stats = {
        int(entry): stat
        for entry in os.listdir("/proc")
        if entry.isdigit() and (stat := _stat(int(entry))) is not None
    }
    servers = {pid for pid in stats if _is_server(pid)}

    def side(pid: int) -> str:
        if pid == os.getpid():
            return "load generator"
        if stats[pid][0] == "postgres":
            return "PostgreSQL"
        # A server's workers are its children (uvicorn spawns them).
        seen = 0
        while pid in stats and seen < 64:
            if pid in servers:
                return "server"
            pid, seen = stats[pid][1], seen + 1
        return "other"

    with open("/proc/stat") as file:
        # cpu user nice system idle iowait irq softirq steal ...
        ticks = [int(value) for value in file.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]
    return Snapshot(
        {pid: (side(pid), stat[2]) for pid, stat in stats.items()},
        busy=sum(ticks) - idle,
        total=sum(ticks),
    )


def per_request(before: Snapshot, after: Snapshot, requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request for each side, and the cores busy on average."""
    spent = dict.fromkeys(SIDES, 0)
    for pid, (side, ticks) in after.processes.items():
        # A pid seen twice is one process unless it was reused in between.
        earlier = before.processes.get(pid)
        spent[side] += ticks - (earlier[1] if earlier and earlier[1] <= ticks else 0)
    figures = {side: spent[side] / _TICK * 1000 / max(requests, 1) for side in SIDES}
    window = after.total - before.total
    cores = os.cpu_count() or 1
    figures["busy_cores"] = cores * (after.busy - before.busy) / window if window else 0.0
    return figures


def describe(figures: list[dict[str, float]]) -> str:
    """The medians of several windows' :func:`per_request` figures, as one phrase."""
    if not figures:
        return "no CPU figures"

    def median(key: str) -> float:
        values = sorted(f[key] for f in figures)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    sides = ", ".join(f"{side} {median(side):.2f}" for side in SIDES)
    cores = os.cpu_count() or 1
    return f"ms of CPU per request: {sides}; {median('busy_cores'):.2f} of {cores} cores busy"
