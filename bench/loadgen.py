"""The load generator: many keep-alive HTTP/1.1 clients in one asyncio process.

It runs in a process of its own (``python -m bench.loadgen SPEC.json``) so that
it never shares an interpreter, nor a GIL, with the server it measures. Raw
sockets instead of an HTTP client library: parsing a response costs a few
microseconds here, so the generator is not what limits the figures.

The spec (JSON) gives the server address, the duration, a warm-up, and per
client a cycle of steps. A step is a request ``[method, path, headers, body]``
optionally followed by probes: requests sent right after its response, with
``{position}`` in their path and headers replaced by that response's ``X-Event-Position``;
their latency, counted from the command's answer, is reported apart
(freshness). With ``rate`` set, clients pace themselves to that many steps
per second in total; otherwise each sends as fast as responses come back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Request = tuple[str, str, dict[str, str], str | None]

_KEEP_BODY = 1 << 16


@dataclass
class Tally:
    """What the clients saw during the measured window."""

    latencies: list[float] = field(default_factory=list)
    probe_latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    body_bytes: int = 0


def render(host: str, request: Request) -> bytes:
    """The request as bytes on the wire."""
    method, path, headers, body = request
    payload = body.encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class WindowClosed(Exception):
    """The measured window ended in the middle of a body."""


async def read_response(
    reader: asyncio.StreamReader, meter: Callable[[int], bool] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of one response.

    ``meter`` is told the size of each chunk of a large body as it arrives;
    when it answers False, reading stops (:class:`WindowClosed`).
    """
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length <= _KEEP_BODY:
        body = await reader.readexactly(length) if length else b""
        return status, headers, body
    # Large bodies (streaming) are counted and dropped as they arrive.
    left = length
    while left:
        chunk = await reader.read(min(left, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(chunk)
        if meter is not None and not meter(len(chunk)):
            raise WindowClosed
    return status, headers, b""


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


async def run_client(
    spec: dict[str, Any], steps: list[list[Request]], tally: Tally, start: float, interval: float
) -> None:
    """One connection sending its cycle of steps until the end of the run.

    A step is a request, then optionally probes: requests sent right after it
    with ``{position}`` (in path or headers) replaced by its ``X-Event-Position``.
    """
    host, port = spec["host"], spec["port"]
    warm_until = start + spec["warmup"]
    stop_at = warm_until + spec["duration"]
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wires = [render(host, step[0]) for step in steps]

    def meter(size: int) -> bool:
        # Bytes count when they arrive inside the window, whole responses or not.
        now = time.perf_counter()
        if warm_until <= now <= stop_at:
            tally.body_bytes += size
        return bool(now < stop_at)

    index = 0
    next_send = time.perf_counter()
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            if interval:
                if now < next_send:
                    await asyncio.sleep(next_send - now)
                next_send += interval
            step = steps[index % len(steps)]
            wire = wires[index % len(steps)]
            index += 1
            sent = time.perf_counter()
            writer.write(wire)
            status, headers, received = await read_response(reader, meter)
            done = time.perf_counter()
            measured = sent >= warm_until and done <= stop_at
            if measured:
                tally.body_bytes += len(received)
                tally.latencies.append(done - sent)
                tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            position = headers.get("x-event-position", "0")
            for method, path, probe_headers, body in step[1:]:
                filled = {k: v.replace("{position}", position) for k, v in probe_headers.items()}
                probe = (method, path.replace("{position}", position), filled, body)
                writer.write(render(host, probe))
                probe_status, _, _ = await read_response(reader)
                if measured:
                    tally.probe_latencies.append(time.perf_counter() - done)
                    key = f"probe {probe_status}"
                    tally.statuses[key] = tally.statuses.get(key, 0) + 1
    except WindowClosed:
        pass
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        tally.errors += 1
    finally:
        writer.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every client; summarise the measured window."""
    tally = Tally()
    clients: list[list[list[Request]]] = [
        [[(r[0], r[1], r[2], r[3]) for r in step] for step in steps] for steps in spec["clients"]
    ]
    rate = spec.get("rate")
    interval = len(clients) / rate if rate else 0.0
    start = time.perf_counter() + 0.5
    await asyncio.gather(
        *(
            run_client(spec, steps, tally, start + i * interval / len(clients), interval)
            for i, steps in enumerate(clients)
        )
    )
    completed = len(tally.latencies)
    ok = sum(n for s, n in tally.statuses.items() if s.startswith("2"))
    return {
        "requests": completed,
        "ok": ok,
        "statuses": tally.statuses,
        "errors": tally.errors,
        "throughput": completed / spec["duration"],
        "megabytes_per_second": tally.body_bytes / spec["duration"] / 1e6,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "probes": len(tally.probe_latencies),
        "probe_p50_ms": percentile(tally.probe_latencies, 0.50) * 1000,
        "probe_p99_ms": percentile(tally.probe_latencies, 0.99) * 1000,
    }


def main() -> None:
    """Entry point: ``python -m bench.loadgen SPEC.json``; prints the summary as JSON."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(spec))))


def drive(spec: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Run the load generator in a process of its own; its summary."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=scratch, delete=False) as file:
        json.dump(spec, file)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", file.name],
            capture_output=True,
            text=True,
            timeout=spec["warmup"] + spec["duration"] + 120,
            check=True,
        )
    finally:
        Path(file.name).unlink(missing_ok=True)
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


if __name__ == "__main__":
    main()
