"""Queries waiting for a position are woken by the projectors' batches, not by polling."""

from __future__ import annotations

import asyncio
import threading
import time

from projections.progress import ProjectionProgress


def test_a_batch_committed_from_another_thread_wakes_the_watchers() -> None:
    progress = ProjectionProgress()

    async def main() -> float:
        watches = [progress.watch() for _ in range(3)]
        began = time.monotonic()
        threading.Timer(0.05, progress.advanced).start()
        await asyncio.gather(*(w.wait(timeout=30) for w in watches))
        return time.monotonic() - began

    assert asyncio.run(main()) < 10


def test_a_batch_between_watching_and_waiting_is_not_missed() -> None:
    progress = ProjectionProgress()

    async def main() -> float:
        watch = progress.watch()
        # What a projector may do while the request reads the positions.
        await asyncio.to_thread(progress.advanced)
        began = time.monotonic()
        await watch.wait(timeout=30)
        return time.monotonic() - began

    assert asyncio.run(main()) < 10


def test_a_watch_that_times_out_or_is_cancelled_is_forgotten() -> None:
    progress = ProjectionProgress()

    async def main() -> None:
        await progress.watch().wait(timeout=0.01)
        progress.watch().cancel()

    asyncio.run(main())
    assert progress.watching() == 0
    progress.advanced()  # nothing left to wake, nothing raised
