"""Scenario 6: streaming a 256 MiB track, whole and in 1 MiB ranges, 1 and 16 readers.

The track is uploaded through the API to the embedded default; readers then
GET ``/api/v1/tracks/{id}/stream`` over keep-alive connections. The baseline
is Starlette's ``FileResponse`` of the very same blob file, served by the same
uvicorn configuration in a process of its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Context, Figure, median
from bench.loadgen import Request, drive
from bench.population import access_tokens, populated
from bench.server import running
from bench.upload import make_wav, send
from tests.support.postgres import free_port

MIB = 1 << 20


def range_steps(path: str, headers: dict[str, str], size: int, seed: int) -> list[list[Request]]:
    """A cycle of 1 MiB ranges at random offsets."""
    rng = random.Random(seed)
    steps: list[list[Request]] = []
    for _ in range(64):
        start = rng.randrange(0, size - MIB)
        steps.append(
            [("GET", path, {**headers, "Range": f"bytes={start}-{start + MIB - 1}"}, None)]
        )
    return steps


def uploaded(base: str, token: str, source: Path) -> str:
    """Upload ``source``; the track id once the read model shows it."""
    host, port = base.removeprefix("http://").split(":")
    status, _ = asyncio.run(send(host, int(port), token, source))
    if status != 201:
        raise RuntimeError(f"upload answered {status}")
    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = httpx.get(f"{base}/api/v1/me/tracks", headers=auth, timeout=10).json()
        if page.get("items"):
            track_id: str = page["items"][0]["id"]
            return track_id
        time.sleep(0.1)
    raise RuntimeError("the uploaded track never appeared")


def run(ctx: Context) -> list[Figure]:
    """Measure MB/s through the API and through FileResponse, alternately."""
    size = 256 * MIB
    env = ctx.env("postgres", THEPLAYLIST_MAX_TRACK_BYTES=str(size + 10 * MIB))
    populated(env, 1, 0)
    source = ctx.scratch / "stream.wav"
    make_wav(source, size)
    duration = 1.0 if ctx.quick else 8.0
    figures: list[Figure] = []
    with running("combined", free_port(), env, ctx.log) as base:
        (token,) = access_tokens(base, 1)
        track_id = uploaded(base, token, source)
        source.unlink()
        blob = max(
            Path(env["THEPLAYLIST_DATA_DIR"]).rglob("*"),
            key=lambda p: p.is_file() and p.stat().st_size,
        )
        auth = {"Authorization": f"Bearer {token}"}
        api_path = f"/api/v1/tracks/{track_id}/stream"
        with running("files", free_port(), {**env, "BENCH_FILE": str(blob)}, ctx.log) as files:
            cases = [(mode, readers) for mode in ("whole", "1 MiB ranges") for readers in (1, 16)]
            if ctx.quick:
                cases = [("whole", 1), ("1 MiB ranges", 16)]
            for mode, readers in cases:
                samples: dict[str, list[float]] = {"api": [], "file": []}
                for _ in range(ctx.reps):
                    for name, server, path, headers in (
                        ("file", files, "/file", {}),
                        ("api", base, api_path, auth),
                    ):
                        host, port = server.removeprefix("http://").split(":")
                        clients: list[Any] = [
                            [[("GET", path, headers, None)]]
                            if mode == "whole"
                            else range_steps(path, headers, blob.stat().st_size, seed=i)
                            for i in range(readers)
                        ]
                        summary = drive(
                            {
                                "host": host,
                                "port": int(port),
                                "warmup": 0.5,
                                "duration": duration,
                                "clients": clients,
                            },
                            ctx.scratch,
                        )
                        if summary["errors"] or summary["ok"] != summary["requests"]:
                            raise RuntimeError(f"streaming {name}: {summary['statuses']}")
                        samples[name].append(summary["megabytes_per_second"])
                figures.append(
                    Figure(
                        "streaming",
                        f"256 MiB, {mode}, {readers} reader{'s' if readers > 1 else ''}",
                        "MB/s",
                        median(samples["api"]),
                        "Starlette FileResponse",
                        median(samples["file"]),
                        target=2.0,
                        detail={"samples": samples},
                    )
                )
    return figures
