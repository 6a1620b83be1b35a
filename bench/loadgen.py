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
The summary also says how much CPU each side spent per request in the
measured window (:mod:`bench.cpu`).
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

from bench.cpu import Snapshot, per_request, snapshot

Request = tuple[str, str, dict[str, str], str | None]

# Bodies up to this size are kept and returned; larger ones are counted and dropped.
KEEP_BODY = 1 << 16


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


class Inbox(asyncio.BufferedProtocol):
    """The receiving end of one client connection, copying as little as it can.

    asyncio's ``StreamReader`` copies every byte twice and pauses the socket
    every 128 KiB: it capped a client at ~1,100 MB/s of 1 MiB responses from a
    server that costs nothing, close to the rate of the servers measured. Here
    the kernel writes into this object's buffer; a large body it is told to
    drop goes into one scratch buffer and is only counted.
    """

    def __init__(self) -> None:
        self._buffer = bytearray(1 << 16)
        self._start = self._end = 0
        self._scratch = bytearray(1 << 20)
        self._sink = 0  # the most bytes to drop into the scratch buffer, when not 0
        self._sunk = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._sink and self._start == self._end:
            return memoryview(self._scratch)[: min(self._sink, len(self._scratch))]
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buffer) - self._end < 1 << 14:
            # Move what is unread to the front, into a larger buffer when it fills half.
            # A new one, not a resized one: the loop may still hold a view of the old.
            kept = bytes(self._buffer[self._start : self._end])
            if len(kept) > len(self._buffer) // 2:
                self._buffer = bytearray(2 * len(self._buffer))
            self._buffer[: len(kept)] = kept
            self._start, self._end = 0, len(kept)
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._sink and self._start == self._end:
            self._sunk += nbytes
        else:
            self._end += nbytes
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> None:
        if self._closed:
            raise ConnectionError("server closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def readline(self) -> bytes:
        """Up to and including the next newline."""
        while True:
            found = self._buffer.find(b"\n", self._start, self._end)
            if found >= 0:
                line = bytes(self._buffer[self._start : found + 1])
                self._start = found + 1
                return line
            await self._more()

    async def readexactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes."""
        while self._end - self._start < size:
            await self._more()
        data = bytes(self._buffer[self._start : self._start + size])
        self._start += size
        return data

    async def drop(self, most: int) -> int:
        """Receive and drop between 1 and ``most`` bytes; how many."""
        if self._end > self._start:
            taken = min(most, self._end - self._start)
            self._start += taken
            return taken
        # With the buffer empty, whatever arrives now goes to the scratch buffer.
        self._sink, self._sunk = most, 0
        try:
            while not self._sunk:
                await self._more()
        finally:
            self._sink = 0
        return self._sunk


async def read_response(
    inbox: Inbox, meter: Callable[[int], bool] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of one response.

    ``meter`` is told the size of each chunk of a large body as it arrives;
    when it answers False, reading stops (:class:`WindowClosed`).
    """
    status_line = await inbox.readline()
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await inbox.readline()
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length <= KEEP_BODY:
        body = await inbox.readexactly(length) if length else b""
        return status, headers, body
    # Large bodies (streaming) are counted and dropped as they arrive.
    left = length
    while left:
        received = await inbox.drop(left)
        left -= received
        if meter is not None and not meter(received):
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
    loop = asyncio.get_running_loop()
    transport, inbox = await loop.create_connection(Inbox, host, port)
    sock = transport.get_extra_info("socket")
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
            transport.write(wire)
            status, headers, received = await read_response(inbox, meter)
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
                transport.write(render(host, probe))
                probe_status, _, _ = await read_response(inbox)
                if measured:
                    tally.probe_latencies.append(time.perf_counter() - done)
                    key = f"probe {probe_status}"
                    tally.statuses[key] = tally.statuses.get(key, 0) + 1
    except WindowClosed:
        pass
    except (ConnectionError, ValueError):
        tally.errors += 1
    finally:
        transport.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every client; summarise the measured window."""
    tally = Tally()
    clients: list[list[list[Request]]] = [
        [[(r[0], r[1], r[2], r[3]) for r in step] for step in steps] for steps in spec["clients"]
    ]
    rate = spec.get("rate")
    interval = len(clients) / rate if rate else 0.0
    start = time.perf_counter() + 0.5
    window_opens = asyncio.create_task(_snapshot_at(start + spec["warmup"]))
    window_closes = asyncio.create_task(_snapshot_at(start + spec["warmup"] + spec["duration"]))
    await asyncio.gather(
        *(
            run_client(spec, steps, tally, start + i * interval / len(clients), interval)
            for i, steps in enumerate(clients)
        )
    )
    completed = len(tally.latencies)
    cpu = per_request(await window_opens, await window_closes, completed)
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
        "cpu": cpu,
    }


async def _snapshot_at(moment: float) -> Snapshot:
    """Every process's CPU time at ``moment`` (a ``time.perf_counter()`` value)."""
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))
    return snapshot()


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
