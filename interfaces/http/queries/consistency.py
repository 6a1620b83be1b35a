"""Read-your-writes: ``X-Min-Position`` makes a query wait for the projections it reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from interfaces.http.deps import ContainerDep
from interfaces.http.errors import ApiError

MIN_POSITION_HEADER = "x-min-position"
_POLL_SECONDS = 0.005


def reads_from(*projections: str) -> Callable[[Request, ContainerDep], Awaitable[None]]:
    """A dependency: with ``X-Min-Position: N``, wait until these projections reach N.

    Waits up to the configured bound, then answers 503 ``projection_lag``.
    """

    async def wait_for_position(request: Request, container: ContainerDep) -> None:
        raw = request.headers.get(MIN_POSITION_HEADER)
        if raw is None:
            return
        raw = raw.strip()
        # isdigit() alone also accepts digits int() refuses, such as "²".
        if not (raw.isascii() and raw.isdigit()):
            raise ApiError(
                422,
                "validation_error",
                "X-Min-Position must be a non-negative integer",
                fields=[{"field": "X-Min-Position", "message": "must be a non-negative integer"}],
            )
        wanted = int(raw)
        positions = container.queries.positions
        deadline = time.monotonic() + container.settings.min_position_wait_seconds
        delay = _POLL_SECONDS
        while True:
            # Watching before reading: a batch committed in between still wakes us.
            watch = container.progress.watch()
            try:
                reached = await asyncio.to_thread(positions.lowest, projections)
                if reached >= wanted:
                    return
                if time.monotonic() >= deadline:
                    raise ApiError(
                        503,
                        "projection_lag",
                        f"the read models have not reached position {wanted} yet (at {reached})",
                        headers={"Retry-After": "1"},
                        position=reached,
                        wanted=wanted,
                    )
                # Projectors of this process wake us at their next batch; those of
                # another process are found by polling, with a growing delay.
                await watch.wait(min(delay, deadline - time.monotonic()))
            finally:
                # Whatever ends this turn (an answer, a 503, a database error), the
                # watch must not stay registered where no batch may ever come.
                watch.cancel()
            delay = min(delay * 2, 0.05)

    return wait_for_position
