"""Scenario 5: uploading a 500 MB track, against ``dd conv=fsync`` of the same size.

The file is a real WAV (a valid header, then PCM frames), sent as one
multipart request over a raw keep-alive socket to the embedded default on
PostgreSQL; the time runs from the first byte sent to the answer. The
baseline writes the same number of bytes with ``dd ... conv=fsync`` into the
server's data directory (same disk). The server's resident memory is sampled
from /proc during each upload: its peak growth must stay under 64 MB.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
import wave
from pathlib import Path
from typing import Any

from bench.common import Context, Figure, median
from bench.population import access_tokens, populated
from bench.server import running
from tests.support.postgres import free_port

CHUNK = 1 << 20


def make_wav(path: Path, size: int) -> None:
    """A WAV of about ``size`` bytes, its first frames unique so every upload is new."""
    frames = (size - 44) // 4
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        out.writeframes(os.urandom(4096))
        silence = bytes(CHUNK)
        left = frames * 4 - 4096
        while left > 0:
            out.writeframes(silence[: min(left, CHUNK)])
            left -= CHUNK


def rss_kib(pid: int) -> int:
    """The process's resident set size, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def send(host: str, port: int, token: str, path: Path) -> tuple[int, float]:
    """POST the file as multipart; the status and the seconds taken."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    writer.write(
        (
            "POST /api/v1/tracks HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        + head
    )
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    writer.write(tail)
    await writer.drain()
    status_line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    elapsed = time.perf_counter() - started
    writer.close()
    return int(status_line.split()[1]), elapsed


def server_pid(port: int) -> int:
    """The pid of the bench server listening on ``port``."""
    found = subprocess.run(
        ["pgrep", "-f", f"bench.server combined {port}$"], capture_output=True, text=True
    ).stdout.split()
    return int(found[0])


def run(ctx: Context) -> list[Figure]:
    """Upload 500 MB (50 MB in quick mode), against dd conv=fsync of the same size."""
    size = 50_000_000 if ctx.quick else 500_000_000
    env = ctx.env("postgres", THEPLAYLIST_MAX_TRACK_BYTES=str(size + 10_000_000))
    populated(env, 1, 0)
    data_dir = Path(env["THEPLAYLIST_DATA_DIR"])
    source = ctx.scratch / "upload.wav"
    port = free_port()
    uploads: list[float] = []
    dds: list[float] = []
    growth: list[float] = []
    with running("combined", port, env, ctx.log) as base:
        (token,) = access_tokens(base, 1)
        pid = server_pid(port)
        for _ in range(ctx.reps):
            make_wav(source, size)
            before = rss_kib(pid)
            peak = [before]
            stop = threading.Event()

            def sample(peak: list[int] = peak, stop: threading.Event = stop) -> None:
                while not stop.wait(0.02):
                    peak[0] = max(peak[0], rss_kib(pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                status, seconds = asyncio.run(send("127.0.0.1", port, token, source))
            finally:
                stop.set()
                sampler.join()
            if status != 201:
                raise RuntimeError(f"upload answered {status}")
            uploads.append(source.stat().st_size / seconds / 1e6)
            growth.append((peak[0] - before) / 1024)
            target = data_dir / "dd.bin"
            started = time.perf_counter()
            subprocess.run(
                [
                    "dd",
                    "if=/dev/zero",
                    f"of={target}",
                    "bs=1M",
                    f"count={size // CHUNK}",
                    "conv=fsync",
                ],
                check=True,
                capture_output=True,
            )
            dds.append((size // CHUNK) * CHUNK / (time.perf_counter() - started) / 1e6)
            target.unlink()
    source.unlink(missing_ok=True)
    detail: dict[str, Any] = {
        "bytes": size,
        "upload_mb_s": uploads,
        "dd_mb_s": dds,
        "rss_growth_mb": growth,
        "note": (
            f"{size / 1e6:.0f} MB WAV; peak server RSS growth {max(growth):.1f} MB (limit 64 MB)"
        ),
    }
    return [
        Figure(
            "upload",
            f"upload {size / 1e6:.0f} MB",
            "MB/s",
            median(uploads),
            "dd conv=fsync, same size, same disk",
            median(dds),
            target=0.5,
            detail=detail,
        ),
        Figure(
            "upload",
            "peak server RSS growth",
            "MB",
            max(growth),
            "the file's size",
            size / 1e6,
            higher_is_better=False,
            limit=64.0,
        ),
    ]
