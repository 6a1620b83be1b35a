"""A real uvicorn server in a process of its own, configured like ``theplaylist serve*``.

``python -m bench.server KIND PORT`` serves, from settings in the environment:

* ``commands``: the command service, plus ``POST /bench/noop``, the trivial
  async endpoint that is the baseline of what the server stack costs;
* ``queries``: the query service, plus ``GET /bench/noop``;
* ``combined``: the embedded default (commands, queries and projectors);
* ``files``: Starlette's ``FileResponse`` of ``BENCH_FILE`` at ``/file``, the
  baseline of streaming.

The same uvicorn options as the CLI (uvloop and httptools when installed, no
access log), with ``BENCH_WORKERS`` worker processes (default 1) sharing one
socket the way ``serve-commands --workers N`` does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from infrastructure.settings import Settings


async def noop() -> dict[str, bool]:
    """The trivial endpoint: no database, no thread, a tiny JSON body."""
    return {"ok": True}


def app_from_env() -> Any:
    """The app named by ``BENCH_KIND``: what each worker process builds.

    Wrapped like the apps of ``theplaylist serve*`` (see ``interfaces.http.serving``).
    """
    from interfaces.http.serving import FrozenAfterStartup, young_generation_threshold

    kind = os.environ["BENCH_KIND"]
    return FrozenAfterStartup(make_app(kind), young_generation_threshold(kind))


def make_app(kind: str) -> Any:
    """The ASGI app of ``kind``."""
    settings = Settings()
    if kind == "commands":
        from interfaces.http.commands.app import create_command_app

        app = create_command_app(settings)
        app.add_api_route("/bench/noop", noop, methods=["POST"], include_in_schema=False)
        return app
    if kind == "queries":
        from interfaces.http.queries.app import create_query_app

        queries = create_query_app(settings)
        queries.add_api_route("/bench/noop", noop, methods=["GET"], include_in_schema=False)
        return queries
    if kind == "files":
        from starlette.applications import Starlette
        from starlette.responses import FileResponse
        from starlette.routing import Route

        served = os.environ["BENCH_FILE"]

        async def health(request: Any) -> Any:
            from starlette.responses import PlainTextResponse

            return PlainTextResponse("ok")

        async def file(request: Any) -> Any:
            return FileResponse(served, media_type="audio/wav")

        return Starlette(routes=[Route("/health", health), Route("/file", file)])
    if kind == "combined":
        from interfaces.http.combined import Combined

        return Combined(settings)
    raise SystemExit(f"unknown server kind {kind!r}")


@contextlib.contextmanager
def running(
    kind: str, port: int, env: dict[str, str], log: Path, workers: int = 1
) -> Iterator[str]:
    """Start the server, wait until it answers /health, stop it afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.server", kind, str(port)],
            env={**os.environ, **env, "BENCH_WORKERS": str(workers)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {kind} server exited; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start; see {log}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """Entry point of the server process."""
    from interfaces.http.serving import run_factory

    os.environ["BENCH_KIND"] = sys.argv[1]
    workers = int(os.environ.get("BENCH_WORKERS", "1"))
    run_factory("bench.server:app_from_env", "127.0.0.1", int(sys.argv[2]), workers)


if __name__ == "__main__":
    main()
